"""The synthetic JUMP-like Cell Painting world (rxsweep.data.synth.cellpainting), checked the way an
outsider would: its tables read with pandas alone and its images with tifffile alone, none of
rxsweep's readers. The tiny preset is generated once for the module (about 7 s on 2 cores, reading
its 11,520 TIFFs back about 5 s more).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rxsweep.data.synth.cellpainting import generate_loaddata

CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")
KEYS = ["Metadata_Source", "Metadata_Plate", "Metadata_Well"]
HELD_OUT = ("source_5", "source_6")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cellpainting") / "tiny"
    start = time.perf_counter()
    assert generate_loaddata(root, "tiny", seed=0, workers=2) == root
    print(f"generate_loaddata(tiny, workers=2): {time.perf_counter() - start:.1f} s")
    return root


@pytest.fixture(scope="module")
def sites(world) -> pd.DataFrame:
    """Every load_data.csv row joined to its platemap row (one_to_one checks there is exactly one)."""
    files = sorted(world.glob("load_data_csv/*/*/*/load_data.csv"))
    load_data = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    platemap = pd.read_csv(world / "platemap.csv")
    wells = load_data[KEYS].drop_duplicates()
    assert len(wells.merge(platemap, on=KEYS, validate="one_to_one")) == len(platemap) == len(wells)
    return load_data.merge(platemap, on=KEYS, how="left", validate="many_to_one")


@pytest.fixture(scope="module")
def images(world, sites) -> dict:
    """Every site's five images, read once: their (shape, dtype) and per-channel features."""
    kinds, features = set(), []
    for row in sites.itertuples(index=False):
        row = row._asdict()
        site = []
        for ch in CHANNELS:
            image = tifffile.imread(world / row[f"PathName_Orig{ch}"] / row[f"FileName_Orig{ch}"])
            kinds.add((image.shape, image.dtype))
            x = image.astype(np.float64)
            site.append([x.mean(), x.std(), *np.percentile(x, [10, 50, 90, 99])])
        features.append(site)
    return {"kinds": kinds, "features": np.asarray(features)}  # [sites, channel, 6]


def test_every_load_data_row_names_five_existing_2d_uint16_images(world, sites, images):
    for ch in CHANNELS:
        assert sites[f"FileName_Orig{ch}"].str.fullmatch(rf"[A-P]\d\d_s[12]_{ch}\.tiff").all()
    assert images["kinds"] == {((64, 64), np.dtype(np.uint16))}
    # A 16-bit camera: a dark offset of a few hundred counts plus a few thousand of signal.
    means, top = images["features"][:, :, 0], images["features"][:, :, 5]
    assert 50 < means.min() and top.max() < 20_000
    assert len(list(world.glob("images/*/*/*/*.tiff"))) == 5 * len(sites)


def test_counts_match_the_tiny_design(sites):
    assert len(sites) == 2304
    assert sites["Metadata_Source"].nunique() == 6
    assert len(sites[["Metadata_Source", "Metadata_Batch"]].drop_duplicates()) == 12
    assert sites["Metadata_Plate"].nunique() == 24
    assert (sites.groupby("Metadata_Plate")["Metadata_Well"].nunique() == 48).all()
    assert sites["Metadata_Site"].dtype.kind == "i" and set(sites["Metadata_Site"]) == {1, 2}
    assert not sites.duplicated(KEYS + ["Metadata_Site"]).any()
    expected_dir = "images/" + sites["Metadata_Source"] + "/" + sites["Metadata_Batch"] + "/" + sites[
        "Metadata_Plate"]
    for ch in CHANNELS:
        assert (sites[f"PathName_Orig{ch}"] == expected_dir).all()


def test_plates_hold_every_treatment_once_and_jump_controls(world, sites):
    platemap = pd.read_csv(world / "platemap.csv")
    assert list(platemap.columns) == [*KEYS, "Metadata_JCP2022", "Metadata_pert_type", "Metadata_modality"]
    assert platemap["Metadata_JCP2022"].str.fullmatch(r"JCP2022_\d{6}").all()
    assert platemap["Metadata_Plate"].str.fullmatch(r"[A-Za-z0-9]+").all()
    # A barcode names one plate of one source.
    assert platemap.groupby("Metadata_Plate")["Metadata_Source"].nunique().max() == 1
    per_plate = platemap.groupby(["Metadata_Plate", "Metadata_pert_type"]).size().unstack()
    assert (per_plate["negcon"] == 8).all() and (per_plate["poscon_cp"] == 4).all()
    assert (per_plate["trt"] == 36).all()
    assert set(platemap.loc[platemap["Metadata_pert_type"] == "negcon", "Metadata_JCP2022"]) == {
        "JCP2022_033924"}
    trt = platemap[platemap["Metadata_pert_type"] == "trt"]
    counts = trt.groupby(["Metadata_JCP2022", "Metadata_Plate"]).size()
    assert len(counts) == 36 * 24 and (counts == 1).all()
    modality = trt.drop_duplicates("Metadata_JCP2022")["Metadata_modality"].value_counts()
    assert modality.to_dict() == {"compound": 24, "orf": 12}
    assert platemap["Metadata_JCP2022"].nunique() == 39


def test_truth_lies_beside_the_root_with_ordered_levels(world):
    assert not list(world.glob("*.json")) and not (world / ".synth-partial.json").exists()
    truth = json.loads((world.parent / f"{world.name}.truth.json").read_text())
    levels = truth["levels"]
    assert set(levels) == {"source", "batch", "plate"}
    for strength in levels["source"]:
        assert levels["source"][strength] > levels["batch"][strength] > levels["plate"][strength]
    assert len(truth["sources"]) == 6 and truth["channels"] == list(CHANNELS)
    strengths = {p["pert_type"]: [] for p in truth["perturbations"]}
    for p in truth["perturbations"]:
        strengths[p["pert_type"]].append(p["strength"])
    assert strengths["negcon"] == [0.0] and min(strengths["poscon_cp"]) > max(np.median(strengths["trt"]), 0)


def _level_variances(values: np.ndarray, source: np.ndarray, batch: np.ndarray) -> tuple[float, ...]:
    """values: one a plate. (variance of source means, of batch means around their source's mean,
    of plate values around their batch's mean), each a mean of squared deviations."""
    def means(keys: np.ndarray, x: np.ndarray) -> dict:
        return {k: x[keys == k].mean() for k in np.unique(keys)}

    batch_key = np.char.add(np.char.add(source, "/"), batch)
    by_batch = means(batch_key, values)
    batch_source = np.array([k.split("/")[0] for k in by_batch])
    batch_means = np.array(list(by_batch.values()))
    by_source = means(batch_source, batch_means)
    source_means = np.array(list(by_source.values()))
    between_batch = batch_means - np.array([by_source[s] for s in batch_source])
    between_plate = values - np.array([by_batch[k] for k in batch_key])
    return source_means.var(), float(np.mean(between_batch**2)), float(np.mean(between_plate**2))


def test_batch_effects_are_strongest_by_source_then_batch_then_plate(sites, images):
    negcon = (sites["Metadata_pert_type"] == "negcon").to_numpy()
    plates = sites[negcon].assign(**{ch: images["features"][negcon, i, 0] for i, ch in enumerate(CHANNELS)})
    plates = plates.groupby(["Metadata_Source", "Metadata_Batch", "Metadata_Plate"])[list(CHANNELS)].mean()
    source = plates.index.get_level_values(0).to_numpy(str)
    batch = plates.index.get_level_values(1).to_numpy(str)
    for ch in CHANNELS:
        v_source, v_batch, v_plate = _level_variances(np.log(plates[ch].to_numpy()), source, batch)
        # Seed 0, log of the negcon mean intensity: source/batch 4.8x (RNA, the dimmest channel, where
        # the dark offset dilutes gains) to 67x, batch/plate 3.1x (ER) to 16x.
        assert v_source > 3 * v_batch and v_batch > 1.5 * v_plate, (ch, v_source, v_batch, v_plate)


def test_treatments_are_learnable_in_held_out_sources(sites, images):
    x = np.log(images["features"].reshape(len(sites), -1))
    z = np.empty_like(x)
    negcon = (sites["Metadata_pert_type"] == "negcon").to_numpy()
    for idx in sites.groupby("Metadata_Plate").indices.values():
        control = x[idx[negcon[idx]]]  # standardise each plate on its DMSO wells, as JUMP profiles do
        z[idx] = (x[idx] - control.mean(0)) / (control.std(0) + 1e-6)
    trt = (sites["Metadata_pert_type"] == "trt").to_numpy()
    test = sites["Metadata_Source"].isin(HELD_OUT).to_numpy()
    y = sites["Metadata_JCP2022"].to_numpy()
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(z[trt & ~test], y[trt & ~test])
    accuracy = float((probe.predict(z[trt & test]) == y[trt & test]).mean())
    # Seed 0: 0.335 (193 of 576 treatment sites of the 2 held-out sources); chance 1/36 = 0.028: 12x.
    assert accuracy > 3 / 36, accuracy


def test_same_seed_gives_the_same_bytes_for_any_worker_count(world, tmp_path):
    # Re-run two plates in this process (the fixture rendered them in a 2-process pool).
    from rxsweep.data.synth.cellpainting.generator import _plan
    from rxsweep.data.synth.cellpainting.job import run_plate
    from rxsweep.data.synth.cellpainting.layout import write_platemap
    from rxsweep.data.synth.cellpainting.presets import LOADDATA_PRESETS

    tasks, design, planned_truth = _plan(LOADDATA_PRESETS["tiny"], 0, tmp_path)
    for task in (tasks[0], tasks[-1]):
        run_plate(task)
    write_platemap(tmp_path, design)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 2 * (48 * 2 * 5 + 1) + 1
    for path in written:
        assert path.read_bytes() == (world / path.relative_to(tmp_path)).read_bytes(), path
    truth = json.loads((world.parent / f"{world.name}.truth.json").read_text())
    assert truth == json.loads(json.dumps({**planned_truth, "identity": truth["identity"]}))
    # A finished generation of the same identity is returned at once, untouched.
    start = time.perf_counter()
    assert generate_loaddata(world, "tiny", seed=0) == world
    assert time.perf_counter() - start < 1.0


def test_refuses_a_foreign_or_different_folder(world, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=re.escape(str(foreign))):
        generate_loaddata(foreign, "tiny", seed=0)
    with pytest.raises(ValueError, match=r"differing: \['seed'\]"):
        generate_loaddata(world, "tiny", seed=1)
    with pytest.raises(ValueError, match="unknown preset"):
        generate_loaddata(tmp_path / "new", "huge")
