"""The synthetic RxRx1 generator: design counts, both file layouts, determinism, batch effects that
dominate, learnable siRNA signal, and the real `wilds` reader on the WILDS layout.

The tiny preset is generated once per module (a few seconds each on two cores).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rxsweep.data import rxrx1_facts
from rxsweep.data.site_features import site_features
from rxsweep.data.synth import PRESETS, generate
from rxsweep.data.synth.writers import truth_file

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("kaggle"), "kaggle", "tiny", seed=0, workers=2)


@pytest.fixture(scope="module")
def wilds_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("wilds"), "wilds", "tiny", seed=0, workers=2)


@pytest.fixture(scope="module")
def truth(kaggle) -> dict:
    return json.loads(truth_file(kaggle).read_text())


@pytest.fixture(scope="module")
def wells(kaggle, truth) -> pd.DataFrame:
    """Every well of the Kaggle output with its label (test answers from truth.json)."""
    train = pd.read_csv(kaggle / "train.csv").assign(well_type="treatment")
    test = pd.read_csv(kaggle / "test.csv").assign(well_type="treatment")
    test["sirna"] = test.id_code.map(truth["kaggle_test_answers"])
    controls = [pd.read_csv(kaggle / f) for f in ("train_controls.csv", "test_controls.csv")]
    df = pd.concat([train, test, *controls], ignore_index=True)
    group = {s["sirna_id"]: s["group"] for s in truth["sirnas"]}
    return df.assign(group=df.sirna.map(group), cell_type=df.experiment.str.split("-").str[0])


def _hash_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------- design
def test_full_preset_has_the_real_counts():
    full = PRESETS["full"]
    assert dict(full.experiments) == rxrx1_facts.EXPERIMENTS_PER_CELL_TYPE
    assert dict(full.train_experiments) == rxrx1_facts.TRAIN_EXPERIMENTS_PER_CELL_TYPE
    assert full.n_experiments == 51 and full.n_treatments == 1108 and full.positive_controls == 30
    assert full.n_classes == rxrx1_facts.N_CLASSES == 1139
    assert full.wells_per_plate == rxrx1_facts.WELLS_PER_PLATE == 308
    assert full.image_size == 512 and full.n_sites == 51 * 4 * 308 * 2
    # WILDS: 33 train, 4 val, 14 test experiments.
    held_out = {ct: n - dict(full.train_experiments)[ct] for ct, n in full.experiments}
    assert sum(dict(full.train_experiments).values()) == 33 and len(held_out) == 4
    assert sum(held_out.values()) - 4 == 14


def test_counts_follow_the_design(wells, truth):
    per_cell_type = wells.groupby("cell_type").experiment.nunique().to_dict()
    assert per_cell_type == dict(TINY.experiments)
    assert (wells.groupby("experiment").plate.nunique() == rxrx1_facts.PLATES_PER_EXPERIMENT).all()
    per_plate = wells.groupby(["experiment", "plate"])
    assert (per_plate.size() == TINY.treatments_per_group + TINY.positive_controls + 1).all()
    assert not wells.id_code.duplicated().any()
    # Controls on every plate: all positive controls and exactly one untreated well.
    counts = per_plate.well_type.value_counts().unstack()
    assert (counts["positive_control"] == TINY.positive_controls).all()
    assert (counts["negative_control"] == 1).all()
    assert set(wells.sirna) == set(range(TINY.n_classes))


def test_plate_groups_and_positions(wells, truth):
    treated = wells[wells.well_type == "treatment"]
    groups_per_plate = treated.groupby(["experiment", "plate"]).group.nunique()
    assert (groups_per_plate == 1).all()  # one plate group a plate
    assert (treated.groupby("experiment").group.nunique() == rxrx1_facts.N_PLATE_GROUPS).all()
    orders = {tuple(e["group_order"]) for e in truth["experiments"]}
    assert len(orders) > 1  # each experiment orders the groups itself
    for exp in truth["experiments"]:  # truth agrees with the files
        on_plate = treated[treated.experiment == exp["name"]].groupby("plate").group.first()
        assert list(on_plate.sort_index()) == exp["group_order"]
    # Positions are shuffled per plate: a control's well moves between plates.
    layouts = wells[wells.well_type != "treatment"].groupby(["experiment", "plate"]).apply(
        lambda p: tuple(p.sort_values("sirna").well), include_groups=False)
    assert layouts.nunique() == len(layouts)
    assert wells.well.isin(rxrx1_facts.all_wells()).all()
    assert wells.well.map(rxrx1_facts.is_edge_well).any()  # few wells, still some on the rim


def test_splits_and_labels(truth):
    names = [e["name"] for e in truth["experiments"]]
    assert all(re.fullmatch(r"(HUVEC|RPE|HEPG2|U2OS)-\d{2}", n) for n in names)
    for cell_type, n in TINY.experiments:
        exps = [e for e in truth["experiments"] if e["cell_type"] == cell_type]
        n_train = dict(TINY.train_experiments)[cell_type]
        assert [e["wilds_split"] for e in exps] == ["train"] * n_train + ["val"] + ["test"] * (n - n_train - 1)
        assert [e["kaggle_split"] for e in exps] == ["train"] * n_train + ["test"] * (n - n_train)
    types = [s["well_type"] for s in truth["sirnas"]]
    t, p = TINY.n_treatments, TINY.positive_controls
    assert types == ["treatment"] * t + ["positive_control"] * p + ["negative_control"]
    null = [s["null"] for s in truth["sirnas"][:t]]
    assert null == [s["strength"] == 0 for s in truth["sirnas"][:t]]
    assert 0 < sum(null) < t  # some null siRNAs, some with a phenotype
    assert all(s["strength"] > 0 for s in truth["sirnas"][t:t + p])


# ---------------------------------------------------------------------------------------- layout
def test_kaggle_layout(kaggle, wells):
    columns = {"train.csv": "id_code,experiment,plate,well,sirna",
               "train_controls.csv": "id_code,experiment,plate,well,sirna,well_type",
               "test.csv": "id_code,experiment,plate,well",
               "test_controls.csv": "id_code,experiment,plate,well,sirna,well_type",
               "pixel_stats.csv": "id_code,experiment,plate,well,site,channel,mean,std,median,min,max"}
    for name, header in columns.items():
        assert (kaggle / name).read_text().splitlines()[0] == header, name
    assert (wells.id_code == wells.experiment + "_" + wells.plate.astype(str) + "_" + wells.well).all()
    pngs = sorted(p.relative_to(kaggle).as_posix() for p in kaggle.rglob("*.png"))
    assert len(pngs) == TINY.n_sites * rxrx1_facts.N_CHANNELS
    pattern = re.compile(r"(train|test)/[A-Z0-9]+-\d{2}/Plate[1-4]/[B-O]\d{2}_s[12]_w[1-6]\.png")
    assert all(pattern.fullmatch(p) for p in pngs)
    test_exps = set(pd.read_csv(kaggle / "test.csv").experiment)
    assert all(p.startswith("test/") == (p.split("/")[1] in test_exps) for p in pngs)
    with Image.open(kaggle / pngs[0]) as img:
        assert img.mode == "L" and img.size == (TINY.image_size, TINY.image_size)
    # pixel_stats is computed from the written image.
    stats = pd.read_csv(kaggle / "pixel_stats.csv")
    assert len(stats) == TINY.n_sites * rxrx1_facts.N_CHANNELS
    row = stats.iloc[7]
    split = "train" if (kaggle / "train" / row.experiment).exists() else "test"
    px = np.asarray(Image.open(kaggle / split / row.experiment / f"Plate{row.plate}" /
                               f"{row.well}_s{row.site}_w{row.channel}.png"))
    assert row["mean"] == pytest.approx(px.mean(), abs=1e-5) and row["max"] == px.max()
    assert row["std"] == pytest.approx(px.std(), abs=1e-5) and row["median"] == np.median(px)


def test_wilds_layout(wilds_root):
    assert wilds_root.name == "rxrx1_v1.0" and (wilds_root / "RELEASE_v1.0.txt").is_file()
    assert truth_file(wilds_root).is_file() and not (wilds_root / "truth.json").exists()  # never in the root
    meta = pd.read_csv(wilds_root / "metadata.csv")
    assert list(meta.columns) == ["site_id", "well_id", "cell_type", "dataset", "experiment", "plate",
                                  "well", "site", "well_type", "sirna", "sirna_id"]
    assert len(meta) == TINY.n_sites
    assert (meta.site_id == meta.well_id + "_" + meta.site.astype(str)).all()
    assert set(meta.dataset) == {"train", "val", "test"}
    assert (meta[meta.dataset == "val"].groupby("cell_type").experiment.nunique() == 1).all()
    ids = np.unique(meta.sirna_id)
    assert list(ids) == list(range(TINY.n_classes))  # contiguous, every id used
    empty = meta.well_type == "negative_control"
    assert (meta.sirna[empty] == "EMPTY").all() and (meta.sirna_id[empty] == TINY.n_classes - 1).all()
    assert meta.sirna[~empty].str.fullmatch(r"s\d{5}").all()
    assert meta[~empty].groupby("sirna_id").sirna.nunique().eq(1).all()
    pngs = sorted(p.relative_to(wilds_root).as_posix() for p in wilds_root.rglob("*.png"))
    expected = sorted(f"images/{r.experiment}/Plate{r.plate}/{r.well}_s{r.site}.png"
                      for r in meta.itertuples())
    assert pngs == expected
    with Image.open(wilds_root / pngs[0]) as img:
        assert img.mode == "RGB" and img.size == (TINY.image_size, TINY.image_size)


# ----------------------------------------------------------------------------------- determinism
def test_same_seed_is_byte_identical_any_worker_count(kaggle, tmp_path):
    again = generate(tmp_path / "again", "kaggle", "tiny", seed=0, workers=1)
    assert _hash_tree(again) == _hash_tree(kaggle)
    assert truth_file(again).read_bytes() == truth_file(kaggle).read_bytes()


def test_other_seed_differs(kaggle, tmp_path):
    other_root = generate(tmp_path / "other", "kaggle", "tiny", seed=1, workers=2)
    other, ours = _hash_tree(other_root), _hash_tree(kaggle)
    assert all(other[k] != ours[k] for k in ("train.csv", "pixel_stats.csv"))
    assert truth_file(other_root).read_bytes() != truth_file(kaggle).read_bytes()
    shared = set(other) & set(ours)  # plate maps differ, so only some image paths coincide
    assert sum(other[k] == ours[k] for k in shared if k.endswith(".png")) == 0


def test_output_folder_rules(kaggle, tmp_path):
    assert generate(kaggle.parent / kaggle.name, "kaggle", "tiny", seed=0) == kaggle  # done: no-op
    with pytest.raises(ValueError, match="other parameters.*seed"):
        generate(kaggle, "kaggle", "tiny", seed=3)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        generate(tmp_path, "kaggle", "tiny")
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; known: \['full', 'small', 'tiny'\]"):
        generate(tmp_path / "x", "kaggle", "huge")
    with pytest.raises(ValueError, match="unknown layout 'zarr'"):
        generate(tmp_path / "x", "zarr", "tiny")
    with pytest.raises(ValueError, match="workers"):
        generate(tmp_path / "x", "kaggle", "tiny", workers=0)


# -------------------------------------------------------------------------------- what's learnable
def test_batch_effects_predict_the_experiment(kaggle, wells):
    """Per-channel means and sds of a site name its experiment: train on site 1, test on site 2.
    And the experiment explains far more of a channel's mean intensity than the siRNA does."""
    stats = pd.read_csv(kaggle / "pixel_stats.csv")
    wide = stats.pivot_table(index=["id_code", "experiment", "site"], columns="channel",
                             values=["mean", "std"]).reset_index()
    x, y, site = wide[["mean", "std"]].to_numpy(), wide.experiment.to_numpy(), wide.site.to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x[site == 1], y[site == 1])
    accuracy = model.score(x[site == 2], y[site == 2])

    stats["sirna"] = stats.id_code.map(dict(zip(wells.id_code, wells.sirna)))

    def share(key: str) -> float:  # eta²: between-group / total sum of squares, mean over channels
        per_channel = stats.groupby("channel")["mean"]
        centred = stats["mean"] - per_channel.transform("mean")
        between = stats.groupby(["channel", key])["mean"].transform("mean") - per_channel.transform("mean")
        return float((between**2).sum() / (centred**2).sum())

    experiment_share, sirna_share = share("experiment"), share("sirna")
    print(f"experiment accuracy from channel means/sds: {accuracy:.3f} ({len(set(y))} experiments); "
          f"variance of channel means explained by experiment {experiment_share:.2f}, "
          f"by siRNA {sirna_share:.2f}")
    assert accuracy >= 0.9
    assert experiment_share >= 3 * sirna_share


def test_sirna_signal_is_learnable_across_experiments(kaggle, wells, truth):
    """Per-plate-normalised image features -> siRNA of experiments the model never saw."""
    split = {e["name"]: e["kaggle_split"] for e in truth["experiments"]}
    held_out = {e["name"] for e in truth["experiments"] if e["wilds_split"] == "test"}
    rows, feats = [], []
    for w in wells.itertuples():
        for site in (1, 2):
            folder = kaggle / split[w.experiment] / w.experiment / f"Plate{w.plate}"
            channels = np.stack([np.asarray(Image.open(folder / f"{w.well}_s{site}_w{c}.png"),
                                            dtype=np.float32) for c in range(1, 7)])
            feats.append(site_features(channels))
            rows.append((f"{w.experiment}_{w.plate}", w.experiment in held_out, w.sirna))
    x = np.stack(feats)
    plate, test, y = (np.array(v) for v in zip(*rows))
    for p in np.unique(plate):  # remove plate (and so experiment) level shifts
        idx = plate == p
        x[idx] = (x[idx] - x[idx].mean(0)) / (x[idx].std(0) + 1e-6)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
    model.fit(x[~test], y[~test])
    hit = model.predict(x[test]) == y[test]
    chance = 1 / TINY.n_classes
    recall = pd.Series(hit).groupby(y[test]).mean()
    sirnas = truth["sirnas"]
    null = [i for i in recall.index if sirnas[i]["well_type"] == "treatment" and sirnas[i]["strength"] == 0]
    active = [i for i in recall.index if sirnas[i]["well_type"] == "treatment" and sirnas[i]["strength"] > 0]
    positive = [i for i in recall.index if sirnas[i]["well_type"] == "positive_control"]
    print(f"siRNA accuracy on held-out experiments: {hit.mean():.3f} (chance {chance:.3f}); recall "
          f"null {recall[null].mean():.3f}, non-null {recall[active].mean():.3f}, "
          f"positive controls {recall[positive].mean():.3f}")
    assert hit.mean() >= 5 * chance
    assert recall[active].mean() >= recall[null].mean() + 0.15  # signal comes from the phenotypes
    assert recall[positive].mean() >= 0.5


# ------------------------------------------------------------------------------- the wilds reader
_WILDS_READER = textwrap.dedent("""
    import sys, types, json
    # wilds.common.metrics imports torchvision detection helpers that RxRx1 never uses, and the
    # torchvision wheel cannot import against a CPU torch: stand-ins keep the import working.
    # `outdated` would start a network version check in a thread: make its import fail (wilds
    # then skips the check).
    sys.modules["outdated"] = None
    stand_ins = {}
    for name in ["torchvision", "torchvision.ops", "torchvision.ops.boxes", "torchvision.models",
                 "torchvision.models.detection", "torchvision.models.detection._utils"]:
        stand_ins[name] = sys.modules[name] = types.ModuleType(name)
    def unused(*args, **kwargs):
        raise NotImplementedError("torchvision stand-in")
    stand_ins["torchvision.ops.boxes"].box_iou = unused
    stand_ins["torchvision.ops"].nms = stand_ins["torchvision.ops"].box_convert = unused
    stand_ins["torchvision.models.detection._utils"].Matcher = type("Matcher", (), {})
    # wilds 2.0.0 predates pandas 3, whose copy-on-write makes Series.values read-only; its RxRx1
    # reader writes into such an array (split_array). Hand it writable copies, as pandas 2 did.
    import numpy as np, pandas as pd
    if int(pd.__version__.split(".")[0]) >= 3:
        _values = pd.Series.values
        pd.Series.values = property(lambda self: np.array(_values.fget(self)))
    from wilds.datasets.rxrx1_dataset import RxRx1Dataset
    out = {}
    for scheme in ("official", "mixed-to-test"):
        ds = RxRx1Dataset(root_dir=sys.argv[1], split_scheme=scheme)
        x, y, meta = ds[5]
        out[scheme] = {
            "len": len(ds), "n_classes": ds.n_classes, "image": [type(x).__name__, x.mode, list(x.size)],
            "y5": int(y), "splits": {k: int((ds.split_array == v).sum()) for k, v in ds.split_dict.items()},
            "train_len": len(ds.get_subset("train")),
        }
    print(json.dumps(out))
""")


def test_the_wilds_reader_reads_it(wilds_root):
    pytest.importorskip("wilds")
    result = subprocess.run([sys.executable, "-c", _WILDS_READER, str(wilds_root.parent)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    meta = pd.read_csv(wilds_root / "metadata.csv")
    for scheme, got in out.items():
        assert got["len"] == len(meta) == TINY.n_sites
        assert got["n_classes"] == TINY.n_classes
        assert got["image"] == ["PngImageFile", "RGB", [TINY.image_size, TINY.image_size]]
        assert got["y5"] == meta.sirna_id[5]
    official = out["official"]["splits"]
    assert official["val"] == (meta.dataset == "val").sum()
    assert official["id_test"] == ((meta.dataset == "train") & (meta.site == 2)).sum()
    mixed = out["mixed-to-test"]["splits"]
    assert mixed["test"] == ((meta.dataset == "test") & (meta.site == 2)).sum()
    assert out["mixed-to-test"]["train_len"] == mixed["train"] > 0
