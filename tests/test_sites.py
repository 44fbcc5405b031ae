"""The site table: both public layouts read into the same columns; bad metadata is a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from rxrx1_files import write_kaggle, write_wilds
from rxsweep.data.errors import SiteTableError
from rxsweep.data.sites import COLUMNS, load_sites


@pytest.fixture()
def kaggle(tmp_path: Path) -> Path:
    return write_kaggle(tmp_path / "kaggle", ["HEPG2-01", "HUVEC-01"], test_experiments=("U2OS-04",))


@pytest.fixture()
def wilds(tmp_path: Path) -> Path:
    return write_wilds(tmp_path / "wilds", ["HEPG2-01", "RPE-02"])


def test_kaggle_wells_expand_to_two_sites_with_six_channel_paths(kaggle: Path):
    table = load_sites(kaggle)
    assert list(table.columns) == COLUMNS
    assert table.attrs == {"layout": "kaggle", "root": str(kaggle.resolve()), "n_channels": 6,
                           "channels": ["nucleus", "er", "actin", "nucleoli", "mitochondria", "golgi"]}
    wells = pd.read_csv(kaggle / "train.csv")
    train = table[table["split_group"] == "train"]
    assert len(train) == 2 * len(wells)
    assert set(train["site"]) == {1, 2}
    row = train.iloc[0]
    assert row["site_id"] == f"{row['experiment']}_{row['plate']}_{row['well']}_{row['site']}"
    assert row["well_id"] == f"{row['experiment']}_{row['plate']}_{row['well']}"
    assert [Path(p).name for p in row["image_paths"]] == [f"{row['well']}_s{row['site']}_w{c}.png" for c in range(1, 7)]
    assert all(Path(p).is_file() for paths in table["image_paths"] for p in paths)
    assert (train["label"] >= 0).all() and (train["well_type"] == "treatment").all()


def test_kaggle_test_set_has_no_labels(kaggle: Path):
    test = load_sites(kaggle).query("split_group == 'test'")
    assert len(test) > 0 and (test["label"] == -1).all() and (test["sirna"] == "").all()
    assert set(test["cell_type"]) == {"U2OS"}


def test_kaggle_controls_keep_their_well_type(kaggle: Path):
    pd.DataFrame([{"id_code": "HEPG2-01_1_D05", "experiment": "HEPG2-01", "plate": 1, "well": "D05",
                   "sirna": 1138, "well_type": "negative_control"}]).to_csv(kaggle / "train_controls.csv", index=False)
    table = load_sites(kaggle).set_index("site_id")
    assert table.loc["HEPG2-01_1_D05_2", "well_type"] == "negative_control"
    assert table.loc["HEPG2-01_1_D05_2", "label"] == 1138


@pytest.mark.parametrize("subfolder", [False, True])
def test_wilds_metadata_at_root_or_in_archive_folder(wilds: Path, subfolder: bool):
    root = wilds / "rxrx1_v1.0" if subfolder else wilds
    table = load_sites(root)
    assert table.attrs["layout"] == "wilds" and table.attrs["n_channels"] == 3
    meta = pd.read_csv(wilds / "rxrx1_v1.0" / "metadata.csv")
    assert sorted(table["site_id"]) == sorted(meta["site_id"])
    assert (table.set_index("site_id")["label"] == meta.set_index("site_id")["sirna_id"]).all()
    assert all(len(p) == 1 and Path(p[0]).is_file() for p in table["image_paths"])


def test_rxrx1_release_with_per_channel_pngs_is_six_channels(wilds: Path):
    images = wilds / "rxrx1_v1.0" / "images"
    for png in list(images.rglob("*.png")):
        for channel in range(1, 7):
            os.link(png, png.with_name(f"{png.stem}_w{channel}.png"))
        png.unlink()
    table = load_sites(wilds)
    assert table.attrs["layout"] == "rxrx1" and table.attrs["n_channels"] == 6
    assert all(len(p) == 6 for p in table["image_paths"])


def test_excel_bom_crlf_spaces_and_lowercase_wells_are_read(tmp_path: Path):
    root = tmp_path / "k"
    root.mkdir()
    (root / "train.csv").write_bytes(
        "\ufeffid_code, experiment ,plate,well,sirna\r\nHEPG2-01_1_B02, HEPG2-01 ,1, b02 ,5\r\n".encode("utf-8"))
    table = load_sites(root)
    assert list(table["site_id"]) == ["HEPG2-01_1_B02_1", "HEPG2-01_1_B02_2"]


def test_missing_required_column_names_file_and_column(kaggle: Path):
    pd.read_csv(kaggle / "train.csv").drop(columns=["plate"]).to_csv(kaggle / "train.csv", index=False)
    with pytest.raises(SiteTableError, match=r"train\.csv: missing required column\(s\) \['plate'\]"):
        load_sites(kaggle)


@pytest.mark.parametrize("column, value, message", [
    ("sirna", "abc", r"column 'sirna' must be an integer >= 0; bad values at line 3: 'abc'"),
    ("plate", "0", r"column 'plate' must be an integer >= 1; bad values at line 3: '0'"),
    ("well", "Z99", r"column 'well' must be a plate position like 'B02'; bad values at line 3: 'Z99'"),
    ("experiment", "../../etc", r"column 'experiment' must be named like 'HEPG2-01'; bad values at line 3"),
    ("experiment", "/abs/HEPG2-01", r"column 'experiment' must be named like 'HEPG2-01'"),
])
def test_bad_value_names_file_line_and_column(kaggle: Path, column: str, value: str, message: str):
    frame = pd.read_csv(kaggle / "train.csv", dtype=str)
    frame.loc[1, column] = value
    frame.to_csv(kaggle / "train.csv", index=False)
    with pytest.raises(SiteTableError, match=message):
        load_sites(kaggle)


def test_duplicate_site_is_an_error_naming_both_lines(wilds: Path):
    meta_file = wilds / "rxrx1_v1.0" / "metadata.csv"
    meta = pd.read_csv(meta_file)
    pd.concat([meta, meta.iloc[[3]]]).to_csv(meta_file, index=False)
    with pytest.raises(SiteTableError, match=rf"1 duplicate site\(s\): {meta.site_id[3]} \(metadata.csv line 5, metadata.csv line {len(meta) + 2}\)"):
        load_sites(wilds)


def test_wilds_cell_type_must_match_experiment(wilds: Path):
    meta_file = wilds / "rxrx1_v1.0" / "metadata.csv"
    meta = pd.read_csv(meta_file)
    meta.loc[0, "cell_type"] = "U2OS"
    meta.to_csv(meta_file, index=False)
    with pytest.raises(SiteTableError, match=r"column 'cell_type' must be the experiment name's prefix"):
        load_sites(wilds)


def test_plate_folder_symlinked_outside_the_root_is_rejected(kaggle: Path, tmp_path: Path):
    plate = kaggle / "train" / "HEPG2-01" / "Plate1"
    outside = tmp_path / "elsewhere"
    plate.rename(outside)
    plate.symlink_to(outside, target_is_directory=True)
    with pytest.raises(SiteTableError, match=r"Plate1 resolves to .*elsewhere, outside the data root"):
        load_sites(kaggle)


def test_not_an_rxrx1_folder_and_unknown_layout(tmp_path: Path, kaggle: Path):
    with pytest.raises(SiteTableError, match=r"not an RxRx1 or LoadData folder: expected train.csv/test.csv"):
        load_sites(tmp_path)
    with pytest.raises(ValueError, match=r"unknown layout 'zarr'; known: \['auto', 'kaggle', 'wilds', 'rxrx1', 'loaddata'\]"):
        load_sites(kaggle, layout="zarr")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_sites(tmp_path / "missing")
