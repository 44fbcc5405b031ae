"""The user's own embeddings as verdict arms (`rxsweep sweep --embeddings NAME=FILE`,
rxsweep.training.embeddings_arm): fed the features baseline's own per-site features, the arm is the
features baseline, table and verdict figures alike; every bad file or NAME is refused by name.

Fast tier (no Ray): ingest needs Ray, so the shards here are written by hand in the ingest format
(manifest.json, stats.parquet, one Parquet shard a plate with the `image` column) - a small world
of 7 one-plate experiments (3 train, 2 heldout_val, 2 heldout_test) of 16 wells, 2 sites a well.
The same equality on the tiny synthetic preset's ingested shards is in tests/test_features_baseline.py
(ray tier, its module's shards).
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rxsweep import fileio
from rxsweep.data.image_column import encode, image_field
from rxsweep.data.ingest import FORMAT, MANIFEST
from rxsweep.data.site_features import site_features
from rxsweep.training.embeddings import COLUMNS
from rxsweep.training.embeddings_arm import (EmbeddingsSpecError, check_embeddings, embeddings_arm, file_sha256,
                                             parse_embeddings, read_embeddings_arm, write_embeddings_arm)
from rxsweep.training.features_baseline import features_baseline, write_features_baseline
from rxsweep.training.site_file import SiteFileError
from rxsweep.tuning import sweep_files

EXPERIMENTS = {"R1": "train", "R2": "train", "R3": "train", "V1": "heldout_val", "V2": "heldout_val",
               "T1": "heldout_test", "T2": "heldout_test"}
N_LABELS, SIZE = 16, 16  # labels 0-11 treatments, 12-14 positive controls, 15 untreated; 16x16 images


# ------------------------------------------------------------------------------------ fixtures
def _images(labels: np.ndarray, experiment: int, rng) -> np.ndarray:
    """uint8 [n, 3, SIZE, SIZE]: each channel brighter by a bit of the label, a square whose size
    tells label % 4, and the experiment's own brightness (its batch effect)."""
    out = rng.integers(0, 30, (len(labels), 3, SIZE, SIZE)).astype(np.int64) + 6 * experiment
    for i, label in enumerate(labels):
        for c in range(3):
            out[i, c] += 40 * ((label >> c) & 1)
        edge = 2 + 2 * (label % 4)
        out[i, 0, :edge, :edge] += 120
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(shards folder, splits of every shard site, {site_id: image}) built by hand."""
    root = tmp_path_factory.mktemp("embeddings-arm") / "shards"
    (root / "shards").mkdir(parents=True)
    rng = np.random.default_rng(0)
    shards, rows, images = [], [], {}
    for e, (experiment, split) in enumerate(EXPERIMENTS.items()):
        sites = pd.DataFrame([{"site_id": f"{experiment}_1_B{label + 2:02d}_{site}",
                               "well_id": f"{experiment}_1_B{label + 2:02d}", "experiment": experiment, "plate": 1,
                               "well": f"B{label + 2:02d}", "site": site, "cell_type": "HUVEC",
                               "well_type": "treatment" if label < 12 else
                               ("positive_control" if label < 15 else "negative_control"),
                               "sirna": f"s{label}", "label": label, "split_group": "x"}
                              for label in range(N_LABELS) for site in (1, 2)])
        pixels = _images(sites["label"].to_numpy(), e, rng)
        images.update(zip(sites["site_id"], pixels))
        table = pa.Table.from_pandas(sites, preserve_index=False)
        table = table.append_column(image_field(pixels.shape[1:]), encode(pixels))
        pq.write_table(table, root / "shards" / f"{experiment}.parquet", row_group_size=12)
        shards.append({"file": f"shards/{experiment}.parquet", "sha256": "-", "rows": len(sites)})
        # a training experiment holds a few `val` wells back (as a run's split does)
        split_of = np.where((split == "train") & (sites["label"] == 3), "val", split)
        rows.append(sites.assign(split=split_of))
    pd.DataFrame({"experiment": ["R1"], "plate": [1]}).to_parquet(root / "stats.parquet")
    manifest = {"format": FORMAT, "n_channels": 3, "image_size": SIZE, "classes": list(range(N_LABELS)),
                "shards": shards}
    (root / MANIFEST).write_text(json.dumps(manifest))
    splits = pd.concat(rows, ignore_index=True)[["site_id", "split", "experiment", "plate", "well_id",
                                                 "cell_type", "well_type", "label"]]
    return root, splits, images


def _save(path, ids, vectors) -> str:
    pd.DataFrame({"site_id": list(ids), "embedding": list(vectors)}).to_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def features_file(world, tmp_path_factory):
    """The features baseline's own per-site features (rxsweep.data.site_features) of every site of
    the split, train included, as an embeddings file."""
    _, splits, images = world
    ids = splits.loc[splits["split"].isin(["train", "heldout_val", "heldout_test"]), "site_id"]
    path = tmp_path_factory.mktemp("files") / "site-features.parquet"
    return _save(path, ids, [site_features(images[i]) for i in ids])


@pytest.fixture(scope="module")
def tables(world, features_file):
    shards, splits, _ = world
    started = time.perf_counter()
    baseline = features_baseline(shards, splits, seed=0)
    middle = time.perf_counter()
    arm = embeddings_arm(shards, splits, features_file, "feats", seed=0)
    print(f"features baseline {middle - started:.2f} s, embeddings arm {time.perf_counter() - middle:.2f} s "
          f"({len(arm)} held-out sites)")
    return baseline, arm


# ------------------------------------------------------------------- the features, as an arm
def test_the_arm_on_the_baselines_own_features_is_the_baseline(tables):
    baseline, arm = tables
    pd.testing.assert_frame_equal(arm[COLUMNS[:-2]], baseline[COLUMNS[:-2]])  # sites, splits, predictions
    log_probs = [np.stack(t["log_probs"].to_list()) for t in (arm, baseline)]
    embedding = [np.stack(t["embedding"].to_list()) for t in (arm, baseline)]
    diffs = {"log_probs": float(np.abs(log_probs[0] - log_probs[1]).max()),
             "embedding": float(np.abs(embedding[0] - embedding[1]).max())}
    accuracy = {name: float((t["prediction"] == t["label"]).mean()) for name, t in (("arm", arm), ("baseline", baseline))}
    print(f"max abs diff {diffs}; held-out accuracy (all wells) {accuracy}")
    assert diffs["log_probs"] <= 1e-5 and diffs["embedding"] <= 1e-6
    assert accuracy["arm"] == accuracy["baseline"] > 1 / N_LABELS  # the LR learned something
    assert arm.attrs["n_train_sites"] == baseline.attrs["n_train_sites"] == 3 * 15 * 2  # label 3: `val`
    assert arm.attrs["n_features"] == baseline.attrs["n_features"] == 23
    assert arm.attrs["name"] == "feats" and arm.attrs["sha256"] == file_sha256(arm.attrs["source"])


def test_the_arm_is_written_with_its_source_and_judged_as_the_baseline(tables, features_file, tmp_path):
    """A sweep folder whose ERM confirmation run, features baseline and `feats` arm are these tables:
    the verdict lists `feats` and `feats + Harmony`, and `feats` has the baseline's figures."""
    from rxsweep.analysis.ranking import rank_sweep
    from rxsweep.analysis.sweep_folder import load_sweep
    from rxsweep.analysis.verdict import compute_verdict
    from rxsweep.training import run_files

    baseline, arm = tables
    folder = tmp_path / "sweep"
    fileio.write_json(folder / sweep_files.SWEEP_FILE, {"format": sweep_files.FORMAT, "name": "arm", "params": [],
                                                        "finished": True})
    erm = {"domain_label": "none", "seed": 0}
    fileio.write_json(folder / sweep_files.CONFIRM_DIR / sweep_files.CONFIRM_FILE,
                      {"erm": {"source_trial": "e", "params": erm, "seeds": [0], "trial_ids": ["c_erm0"]}})
    run = folder / sweep_files.CONFIRM_DIR / sweep_files.TRIALS_DIR / "c_erm0"
    fileio.write_json(run / sweep_files.STATUS_FILE, {"trial_id": "c_erm0", "status": "completed"})
    fileio.write_json(run / sweep_files.PARAMS_FILE, erm)
    (run / run_files.CONFIG_FILE).write_text(json.dumps({**erm, "epochs": 1}))
    write_features_baseline(run / run_files.checkpoint_dir_name(1) / run_files.EMBEDDINGS_FILE, baseline)
    write_features_baseline(folder / sweep_files.BASELINE_EMBEDDINGS, baseline)
    written = write_embeddings_arm(sweep_files.embeddings_arm_path(folder, "feats"), arm)
    assert written == folder / "baselines" / "embeddings" / "feats" / "embeddings.parquet"
    back = read_embeddings_arm(written)
    assert back.attrs["source"] == str(pd.io.common.stringify_path(features_file)) \
        and back.attrs["sha256"] == file_sha256(features_file)
    assert load_sweep(folder).embeddings_arms == {"feats": written}

    verdict = compute_verdict(folder, n_boot=40)
    arms = {a["name"]: a for a in verdict["arms"]}
    assert list(arms) == ["ERM", "ERM + sphering", "ERM + Harmony", "features + LR", "feats", "feats + Harmony"]
    assert arms["feats"]["method"] == "embeddings:feats" and arms["feats"]["correction"] is None
    assert arms["feats + Harmony"]["method"] == "embeddings+harmony:feats"
    assert arms["feats + Harmony"]["correction"] == "harmony"
    for metric in ("heldout_test_acc", "mixing", "replicate_map"):
        ours, theirs = arms["feats"]["metrics"][metric], arms["features + LR"]["metrics"][metric]
        print(metric, {k: ours[k] for k in ("mean", "lo", "hi")}, "features + LR:", theirs["mean"])
        assert ours["mean"] == pytest.approx(theirs["mean"], abs=1e-6), metric
        assert ours["seed_values"] == pytest.approx(theirs["seed_values"], abs=1e-6), metric
    assert arms["feats + Harmony"]["metrics"]["heldout_test_acc"]["mean"] == \
        pytest.approx(arms["feats"]["metrics"]["heldout_test_acc"]["mean"])  # Harmony keeps predictions

    table = rank_sweep(folder).set_index("trial_id")
    assert table.loc["feats", "status"] == table.loc["feats + Harmony", "status"] == "baseline"
    for column in ("heldout_val_acc", "heldout_test_acc", "mixing", "heldout_val_replicate_map"):
        assert table.loc["feats", column] == pytest.approx(table.loc["features + LR", column]), column


def test_the_views_name_the_arms(tables):
    from rxsweep.analysis.figures import method_label
    from rxsweep.analysis.report import verdict_html
    from rxsweep.analysis.terminal_view import _method

    assert method_label("embeddings:feats") == "feats" and method_label("embeddings+harmony:feats") == "feats + Harmony"
    assert _method({"method": "embeddings:dino.v2", "domain_label": float("nan")}) == "dino.v2"
    metric = {"mean": 0.5, "lo": 0.4, "hi": 0.6, "seed_sd": None, "vs_erm": None}
    verdict = {"metrics": ["heldout_test_acc"], "experiments": ["T1"], "n_wells": 1, "level": 0.95,
               "arms": [{"name": "ERM", "method": "erm", "seeds": [0], "trial_ids": ["c"], "search_trials": 1,
                         "metrics": {"heldout_test_acc": metric}},
                        {"name": "feats", "method": "embeddings:feats", "seeds": [0], "trial_ids": [],
                         "search_trials": 0, "metrics": {"heldout_test_acc": {**metric, "vs_erm": "better"}}}]}
    html = verdict_html(verdict)
    assert "<td style='text-align:left'>feats</td><td>deterministic</td>" in html


# ------------------------------------------------------------------------------ what is refused
def _check(world, path):
    check_embeddings({"mine": path}, world[1])


def test_a_site_of_the_split_missing_from_the_file_is_named(world, features_file, tmp_path):
    table = pd.read_parquet(features_file)
    less = _save(tmp_path / "less.parquet", table["site_id"][1:], table["embedding"][1:])
    with pytest.raises(SiteFileError, match=r"has no row for sites of the sweep's split \(train, heldout_val, "
                                            r"heldout_test\): \['R1_1_B02_1'\] \(1 in all\); give a vector"):
        _check(world, less)
    _check(world, features_file)  # the `val` wells of the training experiments may be left out


def test_sites_in_no_shard_are_named_five_and_counted(world, features_file, tmp_path):
    table = pd.read_parquet(features_file)
    strangers = [f"NOPE-{k}_1_B02_1" for k in range(7)]
    more = _save(tmp_path / "more.parquet", [*table["site_id"], *strangers],
                 [*table["embedding"], *[table["embedding"].iloc[0]] * 7])
    with pytest.raises(SiteFileError) as caught:
        _check(world, more)
    message = str(caught.value)
    assert message.startswith(f"--embeddings mine={more} lists site ids that are in no shard: {strangers[:5]} "
                              "and 2 more (7 in all); remove them"), message
    assert isinstance(caught.value, ValueError)


def test_ragged_vectors_and_non_finite_values_are_refused(world, features_file, tmp_path):
    table = pd.read_parquet(features_file)
    vectors = [np.asarray(v) for v in table["embedding"]]
    ragged = _save(tmp_path / "ragged.parquet", table["site_id"], [vectors[0][:5], *vectors[1:]])
    with pytest.raises(SiteFileError, match=r"vectors have different lengths \[5, 23\] \(most have 23; "
                                            r"\['R1_1_B02_1'\] \(1 in all\) do not\); give every site a vector of one length"):
        _check(world, ragged)
    vectors[2] = vectors[2].copy()
    vectors[2][0] = np.nan
    vectors[3] = np.full_like(vectors[3], np.inf)
    nan = _save(tmp_path / "nan.parquet", table["site_id"], vectors)
    with pytest.raises(SiteFileError, match=r"NaN or infinite values in the vectors of sites: \['R1_1_B03_1', "
                                            r"'R1_1_B03_2'\] \(2 in all\); replace them"):
        _check(world, nan)


def test_a_file_without_the_columns_or_twice_a_site_is_refused(world, features_file, tmp_path):
    table = pd.read_parquet(features_file)
    renamed = tmp_path / "renamed.parquet"
    table.rename(columns={"embedding": "features"}).to_parquet(renamed)
    with pytest.raises(SiteFileError, match=r"has columns \['site_id', 'features'\]; it needs site_id and embedding"):
        _check(world, str(renamed))
    twice = _save(tmp_path / "twice.parquet", [*table["site_id"], table["site_id"].iloc[0]],
                  [*table["embedding"], table["embedding"].iloc[0]])
    with pytest.raises(SiteFileError, match=r"lists site ids more than once: \['R1_1_B02_1'\]"):
        _check(world, twice)
    text = tmp_path / "text.parquet"
    text.write_text("not parquet")
    with pytest.raises(SiteFileError, match="is not a Parquet file"):
        _check(world, str(text))


@pytest.mark.parametrize("spec, message", [
    ("bad name=x.parquet", r"NAME 'bad name' must be 1-40 letters, digits or '_', '.', '\+', '-'"),
    ("../up=x.parquet", r"NAME '../up' must be"),
    (".hidden=x.parquet", r"NAME '.hidden' must be"),
    ("ERM=x.parquet", r"NAME 'ERM' is the name of one of the verdict's own arms"),
    ("no-equals-sign", r"--embeddings expects NAME=FILE.parquet, got 'no-equals-sign'"),
    ("mine=missing.parquet", r"--embeddings mine=missing.parquet: no such file; give the path of a Parquet file "
                             r"with columns site_id \(string\) and embedding"),
])
def test_bad_specs_are_refused_before_any_file_is_read(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.parquet").write_text("never read")
    with pytest.raises(EmbeddingsSpecError, match=message):
        parse_embeddings([spec])


def test_a_name_twice_is_refused_and_good_specs_keep_their_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a.parquet", "b.parquet"):
        (tmp_path / name).write_text("x")
    with pytest.raises(EmbeddingsSpecError, match=r"NAME 'cp' is given twice \(.*a.parquet, b.parquet\); give each"):
        parse_embeddings(["cp=a.parquet", "cp=b.parquet"])
    specs = parse_embeddings(["vit_s+dino.v2=b.parquet", "CellProfiler-3=a.parquet"])
    assert list(specs) == ["vit_s+dino.v2", "CellProfiler-3"] and specs["CellProfiler-3"] == tmp_path / "a.parquet"
    assert parse_embeddings(None) == {} and parse_embeddings({"x": tmp_path / "a.parquet"}) == {"x": tmp_path / "a.parquet"}


def test_the_cli_says_a_bad_spec_in_one_line_before_any_data(tmp_path, capsys):
    from rxsweep.cli import main

    code = main(["sweep", "--storage", str(tmp_path / "storage"), "--embeddings", "bad name=x.parquet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("rxsweep sweep: error: --embeddings bad name=x.parquet: NAME 'bad name'")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "storage" / "data").exists()


# -------------------------------------------------------------------------- once a sweep
def test_a_sweep_makes_each_arm_once_and_refuses_another_file_under_its_name(world, features_file, tmp_path):
    from rxsweep.tuning.reference_arms import embeddings_arms_once

    shards, splits, _ = world
    plan = SimpleNamespace(splits=splits)
    specs = parse_embeddings({"feats": features_file})
    embeddings_arms_once(tmp_path, str(shards), plan, 0, specs, echo=False)
    path = sweep_files.embeddings_arm_path(tmp_path, "feats")
    made = path.stat().st_mtime_ns
    embeddings_arms_once(tmp_path, str(shards), plan, 0, specs, echo=False)  # a resume: kept, not redone
    assert path.stat().st_mtime_ns == made
    other = pd.read_parquet(features_file)
    other = _save(tmp_path / "other.parquet", other["site_id"], [np.asarray(v) * 2 for v in other["embedding"]])
    with pytest.raises(ValueError, match=r"this sweep's arm 'feats' was made from another file"):
        embeddings_arms_once(tmp_path, str(shards), plan, 0, parse_embeddings({"feats": other}), echo=False)
