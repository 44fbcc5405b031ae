"""The hand-made-features baseline: site features, and a logistic regression on the tiny shards
scored on held-out experiments, in the schema of a trial's embeddings.

The tiny synthetic set is generated and ingested once per module (ingest needs Ray); the baseline
itself needs no Ray and runs in seconds.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import logsumexp

from rxsweep.data.site_features import FEATURE_NAMES, feature_names, marker_channels, site_features
from rxsweep.training.embeddings import COLUMNS
from rxsweep.tuning import sweep_files
from rxsweep.training.features_baseline import (ABSENT_LOG_PROB, HELDOUT_SPLITS, features_baseline,
                                                features_baseline_scores, read_features_baseline,
                                                write_features_baseline)
from rxsweep.training.run_files import SPLIT_COLUMNS

N_CLASSES = 24  # tiny preset: 20 treatments + 3 positive controls + 1 untreated


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def shards(ray_local, tmp_path_factory):
    from rxsweep.data.prepare import prepare_synthetic

    return prepare_synthetic(tmp_path_factory.mktemp("features-baseline"), preset="tiny", progress=False)


@pytest.fixture(scope="module")
def splits(shards) -> pd.DataFrame:
    """The split a tiny sweep uses (tests/spaces/tiny.yaml), computed as a run computes it
    (RunPlan.splits: with_splits on the opened shard index)."""
    from rxsweep.data.splits import SplitSpec
    from rxsweep.data.stream import open_shards, with_splits

    index = with_splits(open_shards(shards), SplitSpec(n_val_per_cell_type=2, n_test_per_cell_type=1))
    return index.table.loc[:, list(SPLIT_COLUMNS)]


@pytest.fixture(scope="module")
def baseline(shards, splits) -> pd.DataFrame:
    started = time.perf_counter()
    table = features_baseline(shards, splits, seed=0)
    print(f"features baseline on the tiny shards: {time.perf_counter() - started:.2f} s wall "
          f"({len(table)} held-out sites, {table.attrs['n_train_sites']} training sites)")
    return table


# ------------------------------------------------------------------------------- site features
def _site(seed: int = 0, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, (6, size, size), dtype=np.uint8)
    image[0, 4:10, 4:10] = 200  # two nuclei
    image[0, 20:26, 18:24] = 180
    image[2, 2:14, 2:14] = 120  # a cell body
    return image


def test_site_features_have_one_name_each():
    values = site_features(_site())
    assert values.shape == (len(FEATURE_NAMES),) == (7 * 6 + 2,) and np.isfinite(values).all()
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert FEATURE_NAMES[:2] == ["mean/nucleus", "mean/er"] and "nuclei_count" in FEATURE_NAMES
    assert len(site_features(_site()[:3])) == len(feature_names(["a", "b", "c"])) == 23
    count = FEATURE_NAMES.index("nuclei_count")
    assert values[count] == pytest.approx(np.log1p(2))


def test_cell_painting_channels_in_loaddata_order_count_nuclei_on_the_dna_stain():
    """LoadData's alphabetical order puts AGP first and DNA second: the nucleus and cell-body
    features follow the names, not RxRx1's positions (the same site, reordered, counts the same)."""
    rxrx1 = _site()[[0, 1, 2, 4, 3]]  # nucleus, er, actin, mito, nucleoli-as-RNA
    names = ["OrigDNA", "OrigER", "OrigAGP", "OrigMito", "OrigRNA"]
    order = np.argsort(names)  # OrigAGP, OrigDNA, OrigER, OrigMito, OrigRNA
    markers = marker_channels([names[i] for i in order])
    assert markers == (1, 0) and marker_channels(FEATURE_NAMES[:6]) == (0, 2)
    assert marker_channels(["nucleoli", "er", "DNA"]) == (2, 2)  # nucleoli is no nucleus stain
    count = feature_names(names).index("nuclei_count")
    assert site_features(rxrx1[order], *markers)[count] == site_features(rxrx1)[count] == pytest.approx(np.log1p(2))
    assert site_features(rxrx1[order])[count] != site_features(rxrx1)[count]  # RxRx1's positions: the AGP stain


def test_uint8_sites_give_the_numbers_of_float_ones():
    for seed in range(5):
        image = _site(seed)
        np.testing.assert_allclose(site_features(image), site_features(image.astype(np.float32)), rtol=1e-12)
    quantiles = [FEATURE_NAMES.index(f"q{q}/actin") for q in ("10", "50", "90", "99")]
    flat = _site(3)[2].astype(np.float64).ravel()
    np.testing.assert_allclose(site_features(_site(3))[quantiles],
                               np.log1p(np.quantile(flat, [0.1, 0.5, 0.9, 0.99])), rtol=1e-12)


def test_a_blank_site_has_finite_features_and_bad_shapes_are_refused():
    assert np.isfinite(site_features(np.zeros((6, 16, 16), np.uint8))).all()
    with pytest.raises(ValueError, match=r"\[C, H, W\] with C >= 3"):
        site_features(np.zeros((2, 16, 16)))
    with pytest.raises(ValueError, match="shape"):
        site_features(np.zeros((16, 16)))


# ------------------------------------------------------------------------------------ baseline
def test_held_out_treatment_accuracy_beats_chance(baseline):
    scores = features_baseline_scores(baseline)
    print("features baseline:", {k: round(v, 3) for k, v in scores.items()})
    for split in HELDOUT_SPLITS:
        treat = baseline[(baseline["split"] == split) & (baseline["well_type"] == "treatment")]
        chance = 1 / treat["label"].nunique()
        assert scores[f"{split}_acc"] == pytest.approx((treat["prediction"] == treat["label"]).mean())
        assert scores[f"{split}_acc"] >= 3 * chance, (split, scores, chance)
        rows = baseline[baseline["split"] == split]
        assert scores[f"{split}_acc_all"] == pytest.approx((rows["prediction"] == rows["label"]).mean())


def test_every_held_out_site_once_and_no_other(baseline, splits):
    held = splits[splits["split"].isin(HELDOUT_SPLITS)]
    assert not baseline["site_id"].duplicated().any()
    assert set(baseline["site_id"]) == set(held["site_id"])
    expected = held.set_index("site_id").loc[baseline["site_id"]]
    assert (baseline["split"].to_numpy() == expected["split"].to_numpy()).all()
    assert (baseline["label"].to_numpy() == expected["label"].to_numpy()).all()
    assert (baseline["experiment"].to_numpy() == expected["experiment"].to_numpy()).all()
    assert baseline.attrs["n_train_sites"] == (splits["split"] == "train").sum()
    assert features_baseline_scores(baseline)["n_train_sites"] == baseline.attrs["n_train_sites"]
    assert list(baseline.columns) == COLUMNS
    order = list(zip(baseline["split"], baseline["site_id"]))
    assert order == sorted(order)  # as a trial's embeddings: split, then site_id


def test_log_probs_are_normalised_and_name_the_prediction(baseline):
    log_probs = np.stack(baseline["log_probs"].to_list())
    assert log_probs.dtype == np.float32 and log_probs.shape == (len(baseline), N_CLASSES)
    np.testing.assert_allclose(logsumexp(log_probs.astype(np.float64), axis=1), 0.0, atol=1e-4)
    assert (log_probs.argmax(axis=1) == baseline["prediction"].to_numpy()).all()
    embedding = np.stack(baseline["embedding"].to_list())
    assert embedding.dtype == np.float32 and embedding.shape == (len(baseline), len(FEATURE_NAMES))
    assert np.isfinite(embedding).all()


def test_predictions_are_deterministic_for_a_seed(baseline, shards, splits):
    again = features_baseline(shards, splits, seed=0)
    pd.testing.assert_frame_equal(again[COLUMNS[:-2]], baseline[COLUMNS[:-2]])
    assert np.array_equal(np.stack(again["log_probs"].to_list()), np.stack(baseline["log_probs"].to_list()))
    assert np.array_equal(np.stack(again["embedding"].to_list()), np.stack(baseline["embedding"].to_list()))


def test_a_class_absent_from_training_is_never_predicted(shards, splits):
    missing = int(splits.loc[(splits["well_type"] == "treatment") & (splits["label"] >= 0), "label"].min())
    fewer = splits.copy()
    fewer.loc[(fewer["split"] == "train") & (fewer["label"] == missing), "split"] = "val"
    table = features_baseline(shards, fewer, seed=0)
    log_probs = np.stack(table["log_probs"].to_list())
    assert (log_probs[:, missing] == np.float32(ABSENT_LOG_PROB)).all()
    assert (table["prediction"] != missing).all() and (table["label"] == missing).any()
    np.testing.assert_allclose(logsumexp(log_probs.astype(np.float64), axis=1), 0.0, atol=1e-4)


def test_bad_splits_are_refused(shards, splits):
    with pytest.raises(ValueError, match=r"lack the columns \['split'\]"):
        features_baseline(shards, splits.drop(columns=["split"]))
    no_train = splits.assign(split=splits["split"].replace({"train": "val"}))
    with pytest.raises(ValueError, match="no `train` site"):
        features_baseline(shards, no_train)
    with pytest.raises(ValueError, match="sites twice"):
        features_baseline(shards, pd.concat([splits, splits.iloc[:1]]))
    stranger = pd.concat([splits, pd.DataFrame({"site_id": ["NOPE-01_1_B02_1"], "split": ["heldout_test"]})])
    with pytest.raises(ValueError, match="not in the shards"):
        features_baseline(shards, stranger)


# --------------------------------------------------------------------------------------- files
def test_the_written_table_round_trips_in_the_embeddings_schema(baseline, tmp_path):
    target = tmp_path / sweep_files.BASELINE_EMBEDDINGS
    assert read_features_baseline(target) is None
    path = write_features_baseline(target, baseline)
    assert path == target and path.is_file()
    assert not list(path.parent.glob("*.tmp"))
    schema = pq.read_schema(path)
    assert schema.names == COLUMNS
    assert schema.field("embedding").type == pa.list_(pa.float32(), len(FEATURE_NAMES))
    assert schema.field("log_probs").type == pa.list_(pa.float16(), N_CLASSES)  # as a trial writes them
    assert all(schema.field(c).type == pa.int64() for c in ("plate", "label", "prediction"))

    back = read_features_baseline(target)
    pd.testing.assert_frame_equal(back[COLUMNS[:-2]], baseline[COLUMNS[:-2]], check_dtype=False)
    assert np.array_equal(np.stack(back["embedding"].to_list()), np.stack(baseline["embedding"].to_list()))
    np.testing.assert_allclose(np.stack(back["log_probs"].to_list()).astype(np.float32),
                               np.stack(baseline["log_probs"].to_list()), rtol=1e-3, atol=1e-3)
    assert back.attrs["n_train_sites"] == baseline.attrs["n_train_sites"]
    assert back.attrs["feature_names"] == FEATURE_NAMES
    assert features_baseline_scores(back) == features_baseline_scores(baseline)
    # what analysis reads a trial's embeddings with reads it too
    from rxsweep.metrics.embedding_scores import read_embeddings

    assert len(read_embeddings(path)) == len(baseline)


def test_scores_count_treatments_apart_and_say_nan_for_a_missing_split():
    table = pd.DataFrame({"split": ["heldout_val"] * 4, "well_type": ["treatment", "treatment",
                                                                      "positive_control", "negative_control"],
                          "label": [1, 2, 3, 4], "prediction": [1, 0, 3, 4]})
    scores = features_baseline_scores(table)
    assert scores["heldout_val_acc"] == 0.5 and scores["heldout_val_acc_all"] == 0.75
    assert math.isnan(scores["heldout_test_acc"]) and math.isnan(scores["heldout_test_acc_all"])
    assert math.isnan(scores["n_train_sites"])


# ----------------------------------------------------------- the same features as a user's file
def test_the_embeddings_arm_on_these_features_is_this_baseline(shards, splits, baseline, tmp_path):
    """`rxsweep sweep --embeddings` (rxsweep.training.embeddings_arm) fed the baseline's own site
    features of every site of the split reproduces the baseline's table (tests/test_embeddings_arm.py
    shows the same on hand-written shards in the fast tier, and that the verdict's figures follow)."""
    from rxsweep.training.embeddings_arm import embeddings_arm
    from rxsweep.training.features_baseline import _manifest, _read_features, wanted_sites

    sites, x = _read_features(str(shards), _manifest(str(shards)), set(wanted_sites(splits)["site_id"]))
    path = tmp_path / "site-features.parquet"
    pd.DataFrame({"site_id": sites["site_id"], "embedding": list(x)}).to_parquet(path)
    started = time.perf_counter()
    arm = embeddings_arm(shards, splits, path, "features", seed=0)
    diff = {c: float(np.abs(np.stack(arm[c].to_list()) - np.stack(baseline[c].to_list())).max())
            for c in ("log_probs", "embedding")}
    print(f"embeddings arm {time.perf_counter() - started:.2f} s; max abs diff {diff}; accuracy "
          f"{features_baseline_scores(arm)} vs {features_baseline_scores(baseline)}")
    pd.testing.assert_frame_equal(arm[COLUMNS[:-2]], baseline[COLUMNS[:-2]])
    assert diff["log_probs"] <= 1e-5 and diff["embedding"] <= 1e-6
    assert features_baseline_scores(arm) == features_baseline_scores(baseline)
