"""The LoadData layout (your own Cell Painting plates): read, quarantined, scaled and ingested as the
files say, checked against values computed here from the files the test wrote itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from loaddata_files import CHANNELS, FAULTS, PLATES, pixels, write_loaddata
from rxsweep.data import image_column
from rxsweep.data.errors import SiteTableError
from rxsweep.data.sites import load_sites, load_sites_and_rejected
from rxsweep.data.splits import SplitSpec, assign_splits

SITE_TABLE_FAULTS = {s: r for s, r in FAULTS.items() if not r.startswith("image ") or "outside" in r}


def _same_reasons(rows: pd.DataFrame, expected: dict[str, str]) -> None:
    """The same sites, each with a reason that starts as expected."""
    reasons = dict(zip(rows["site_id"], rows["reason"]))
    assert sorted(reasons) == sorted(expected)
    assert {s: r for s, r in reasons.items() if not r.startswith(expected[s])} == {}


@pytest.fixture(scope="module")
def plates(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("loaddata")
    return write_loaddata(tmp / "plates", tmp / "outside")


def test_sites_map_loaddata_names_and_quarantine_what_cannot_be_used(plates: Path):
    table, rejected = load_sites_and_rejected(plates)
    assert table.attrs["layout"] == "loaddata" and table.attrs["channels"] == CHANNELS  # brightfield left out
    _same_reasons(rejected, SITE_TABLE_FAULTS)
    listed = len(PLATES) * 6 * 2
    assert len(table) + len(rejected) == listed
    row = table.set_index("site_id").loc["P3_A01_2"]  # 'A1' in the CSV; plate P3 is batch B2's first
    assert (row["source"], row["batch"], row["experiment"], row["plate"], row["well"]) == ("S1", "B2", "S1_B2", 1, "A01")
    assert row["well_type"] == "negative_control" and row["sirna"] == "JCP2022_033924"
    assert table.set_index("site_id").loc["P2_A01_1", "plate"] == 2
    # Class ids: treatments by id, then positive controls, then negative controls.
    labels = table.groupby("sirna")["label"].first().to_dict()
    assert labels == {"JCP2022_000001": 0, "JCP2022_000002": 1, "JCP2022_000003": 2,
                      "JCP2022_900001": 3, "JCP2022_033924": 4}
    assert table["image_paths"].map(len).eq(5).all()
    assert table.loc[0, "image_paths"][1].endswith("images/S1/B1/P1/A01_s1_OrigDNA.tiff")


def test_another_sites_names_through_loaddata_yaml(plates: Path, tmp_path: Path):
    """The same plates under another site's column names, with CSVs that name another machine's
    folders: loaddata.yaml maps both, and the table is the same."""
    root = tmp_path / "renamed"
    (root / "lists").mkdir(parents=True)
    shutil.copytree(plates / "images", root / "images")  # a symlink out of the root is refused
    names = {"Metadata_Plate": "Assay_Plate_Barcode", "Metadata_Well": "well_position", "Metadata_Site": "Site"}
    for i, csv in enumerate(sorted(plates.glob("load_data_csv/**/load_data.csv"))):
        frame = pd.read_csv(csv, dtype=str).rename(columns=names)
        for column in [c for c in frame.columns if c.startswith("PathName_")]:
            frame[column] = frame[column].str.replace("images/", "/mnt/other-lab/images/", n=1)
        frame.to_csv(root / "lists" / f"plate{i}.csv", index=False)
    plate_map = pd.read_csv(plates / "platemap.csv", dtype=str).rename(
        columns={**names, "Metadata_JCP2022": "broad_sample", "Metadata_pert_type": "control_type"})
    plate_map.to_csv(root / "layout.csv", index=False)
    (root / "loaddata.yaml").write_text(
        "load_data: ['lists/*.csv']\nplatemap: layout.csv\n"
        "columns: {plate: Assay_Plate_Barcode, well: well_position, site: Site, perturbation: broad_sample,\n"
        "          control_type: control_type}\n"
        "path_map: {'/mnt/other-lab/': ''}\ncell_type: U2OS\n")
    mine, _ = load_sites_and_rejected(root)
    theirs, _ = load_sites_and_rejected(plates)
    assert (mine["cell_type"] == "U2OS").all()
    pd.testing.assert_frame_equal(mine.drop(columns=["image_paths", "cell_type"]),
                                  theirs.drop(columns=["image_paths", "cell_type"]))
    (root / "loaddata.yaml").write_text("colums: {}\n")
    with pytest.raises(SiteTableError, match=r"unknown key\(s\) \['colums'\]"):
        load_sites(root)


def test_errors_name_the_file_and_what_to_change(plates: Path, tmp_path: Path):
    root = tmp_path / "bad"
    (root / "load_data_csv").mkdir(parents=True)
    with pytest.raises(SiteTableError, match="no LoadData CSV matches"):
        load_sites(root)
    frame = pd.read_csv(next(plates.glob("load_data_csv/**/load_data.csv")), dtype=str)
    frame.loc[1, "Metadata_Plate"] = "../P1"
    frame.to_csv(root / "load_data_csv" / "load_data.csv", index=False)
    with pytest.raises(SiteTableError, match=r"load_data.csv: column 'Metadata_Plate' must be a name .* line 3: '../P1'"):
        load_sites(root)
    frame.loc[1, "Metadata_Plate"] = "P1"
    frame.to_csv(root / "load_data_csv" / "load_data.csv", index=False)
    with pytest.raises(SiteTableError, match="no platemap platemap.csv"):
        load_sites(root)


def test_whole_sources_are_held_out():
    sources = {"S1": ["S1_B1", "S1_B2"], "S2": ["S2_B1", "S2_B2"], "S3": ["S3_B1"], "S4": ["S4_B1", "S4_B2"]}
    rows = [{"experiment": e, "source": s, "cell_type": "cells", "well_id": f"{e}_{w}", "well_type": "treatment",
             "label": w} for s, exps in sources.items() for e in exps for w in range(10)]
    index = pd.DataFrame(rows)
    split = assign_splits(index, SplitSpec(n_val_sources=1, n_test_sources=2, seed=3))
    held = {name: set(index.loc[split == name, "source"]) for name in ("heldout_val", "heldout_test")}
    assert len(held["heldout_val"]) == 1 and len(held["heldout_test"]) == 2
    for name, chosen in held.items():  # every experiment of a held-out source, and nothing else
        assert set(index.loc[split == name, "experiment"]) == {e for s in chosen for e in sources[s]}
    assert set(index.loc[split.isin(["train", "val"]), "source"]).isdisjoint(held["heldout_val"] | held["heldout_test"])
    with pytest.raises(ValueError, match="4 source.*would leave none to train on"):
        assign_splits(index, SplitSpec(n_val_sources=2, n_test_sources=2))


@pytest.mark.ray
def test_ingest_quarantines_each_fault_and_scales_by_each_plates_controls(plates: Path, ray_local, tmp_path: Path):
    from rxsweep.data.ingest import ingest
    from rxsweep.data.stream import open_shards

    manifest = ingest(plates, tmp_path / "shards", progress=False)
    quarantine = pd.read_csv(tmp_path / "shards" / "quarantine.csv")
    _same_reasons(quarantine, FAULTS)
    counts = manifest["counts"]
    assert (counts["listed"], counts["quarantined"]) == (len(PLATES) * 12, len(FAULTS))
    assert counts["written"] == counts["listed"] - len(FAULTS)
    assert manifest["n_channels"] == 5 and manifest["channels"] == CHANNELS

    # Each plate's scale: its negative controls' 0.1 and 99.9 percentiles, computed here by hand.
    scaling = manifest["intensity_scaling"]["plates"]
    table = load_sites(plates)
    shards = pd.concat([pq.read_table(f).to_pandas() for f in sorted((tmp_path / "shards" / "shards").glob("*.parquet"))])
    shape = image_column.shape_of(pq.read_schema(next((tmp_path / "shards" / "shards").glob("*.parquet"))).field("image"))
    for barcode in ("P1", "P4"):
        controls = table[(table["well_id"].str.startswith(barcode + "_")) & (table["well_type"] == "negative_control")]
        key = f"{controls['experiment'].iloc[0]}/{controls['plate'].iloc[0]}"
        for c, channel in enumerate(CHANNELS):
            values = np.concatenate([pixels(barcode, w, s, channel).ravel() for w, s in zip(controls["well"], controls["site"])])
            lo, hi = np.percentile(values, [0.1, 99.9])
            assert scaling[key]["lo"][c] == pytest.approx(lo) and scaling[key]["hi"][c] == pytest.approx(hi)
            site = shards.set_index("site_id").loc[f"{barcode}_C02_2"]
            image = np.frombuffer(site["image"], np.uint8).reshape(shape)
            raw = pixels(barcode, "C02", 2, channel).astype(np.float64)
            expected = np.rint(np.clip((raw - lo) / (hi - lo), 0, 1) * 255)
            assert np.abs(image[c].astype(int) - expected).max() <= 1
    index = open_shards(tmp_path / "shards")
    assert set(index.table["source"]) == {"S1", "S2", "S3"} and index.n_channels == 5
    assert index.table.groupby("experiment")["batch"].nunique().eq(1).all()
    assert json.loads((tmp_path / "shards" / "manifest.json").read_text())["layout"] == "loaddata"
