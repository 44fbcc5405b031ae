"""Ingest: every listed site ends up written exactly once or quarantined with its reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rxrx1_files import write_kaggle, write_wilds
from rxsweep.data import image_column
from rxsweep.data.ingest import ingest
from rxsweep.data.sites import load_sites

EXPERIMENTS = ["HEPG2-01", "HUVEC-01", "RPE-01"]


def _break(root: Path, tmp_path: Path) -> dict[str, str]:
    """Damage six sites in six different ways; returns site_id -> expected reason."""
    plate = root / "train" / "HEPG2-01" / "Plate1"
    (plate / "B02_s1_w3.png").unlink()
    (plate / "B02_s2_w1.png").write_bytes(b"not a png")
    data = (plate / "B03_s1_w2.png").read_bytes()
    (plate / "B03_s1_w2.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(plate / "B03_s2_w4.png")
    Image.fromarray(np.zeros((16, 16), np.uint16)).save(plate / "C02_s1_w5.png")
    outside = tmp_path / "outside.png"
    (plate / "C02_s2_w6.png").rename(outside)
    (plate / "C02_s2_w6.png").symlink_to(outside)
    return {
        "HEPG2-01_1_B02_1": "image file missing",
        "HEPG2-01_1_B02_2": "image unreadable",
        "HEPG2-01_1_B03_1": "image unreadable",
        "HEPG2-01_1_B03_2": "image is 32x32, expected 16x16",
        "HEPG2-01_1_C02_1": "image mode I;16, expected 8-bit L",
        "HEPG2-01_1_C02_2": "resolves outside the data root",
    }


@pytest.fixture(scope="module")
def damaged(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ingest")
    root = write_kaggle(tmp / "kaggle", EXPERIMENTS, test_experiments=("U2OS-04",))
    expected = _break(root, tmp)
    manifest = ingest(root, tmp / "shards", max_sites_per_shard=5, progress=False)
    return root, tmp / "shards", manifest, expected


def _shard_rows(shards: Path) -> pd.DataFrame:
    return pd.concat([pq.read_table(f).to_pandas() for f in sorted((shards / "shards").glob("*.parquet"))])


def test_bad_images_are_quarantined_with_their_reason(damaged):
    _, shards, manifest, expected = damaged
    quarantine = pd.read_csv(shards / "quarantine.csv").set_index("site_id")
    assert sorted(quarantine.index) == sorted(expected)
    for site_id, reason in expected.items():
        assert reason in quarantine.loc[site_id, "reason"], (site_id, quarantine.loc[site_id, "reason"])
        assert Path(quarantine.loc[site_id, "path"]).name.startswith(site_id.split("_")[2])


def test_counts_reconcile_exactly(damaged):
    root, shards, manifest, expected = damaged
    listed = load_sites(root)
    counts = manifest["counts"]
    assert counts["listed"] == len(listed) == counts["written"] + counts["quarantined"]
    assert counts["quarantined"] == len(expected)
    rows = _shard_rows(shards)
    assert rows["site_id"].is_unique
    assert set(rows["site_id"]) | set(expected) == set(listed["site_id"])
    assert counts["by_plate"]["HEPG2-01/1"] == {"listed": 6, "written": 0, "quarantined": 6}
    assert counts["by_plate"]["HEPG2-01/2"] == {"listed": 6, "written": 6, "quarantined": 0}
    assert sum(v["written"] for v in counts["by_experiment"].values()) == counts["written"]
    assert sum(s["rows"] for s in manifest["shards"]) == counts["written"]


def test_shards_hold_the_decoded_pixels_one_binary_value_a_site(damaged):
    root, shards, _, _ = damaged
    table = pq.read_table(shards / "shards" / "HUVEC-01_P2_000.parquet")
    field = table.schema.field("image")
    assert field.type == pa.binary(6 * 16 * 16) and json.loads(field.metadata[b"rxsweep.shape"]) == [6, 16, 16]
    images = image_column.to_numpy(table.column("image"), (6, 16, 16))
    tensor = image_column.as_tensor(table.column("image"), (6, 16, 16))  # the canonical tensor, no copy
    assert tensor.type == pa.fixed_shape_tensor(pa.uint8(), [6, 16, 16])
    assert np.array_equal(tensor.to_numpy_ndarray(), images)
    first = np.frombuffer(table.to_pandas()["image"].iloc[0], np.uint8).reshape(6, 16, 16)  # pandas, no rxsweep
    row = table.slice(0, 1).to_pylist()[0]
    plate = root / "train" / row["experiment"] / f"Plate{row['plate']}"
    expected = np.stack([np.asarray(Image.open(plate / f"{row['well']}_s{row['site']}_w{c}.png")) for c in range(1, 7)])
    assert np.array_equal(images[0], expected) and np.array_equal(first, expected)
    assert table.column("label").type == "int64"


def test_stats_match_a_direct_computation(damaged):
    _, shards, _, _ = damaged
    stats = pd.read_parquet(shards / "stats.parquet")
    rows = _shard_rows(shards)
    plate = rows[(rows.experiment == "HUVEC-01") & (rows.plate == 2)]
    pixels = np.stack([np.frombuffer(i, np.uint8).reshape(6, 16, 16).astype(np.float64) for i in plate["image"]])
    got = stats.query("level == 'plate' and experiment == 'HUVEC-01' and plate == 2 and subset == 'all'").sort_values("channel")
    np.testing.assert_allclose(got["mean"], pixels.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(got["std"], pixels.std(axis=(0, 2, 3)), rtol=1e-9)
    experiment = stats.query("level == 'experiment' and experiment == 'HUVEC-01' and subset == 'all'")
    assert (experiment["n_sites"] == (rows.experiment == "HUVEC-01").sum()).all()


def test_running_again_does_nothing(damaged):
    root, shards, manifest, _ = damaged
    before = {p: p.stat().st_mtime_ns for p in shards.rglob("*")}
    again = ingest(root, shards, max_sites_per_shard=5, progress=False)
    assert again == manifest
    assert {p: p.stat().st_mtime_ns for p in shards.rglob("*")} == before


def test_other_parameters_into_the_same_folder_are_refused(damaged):
    root, shards, _, _ = damaged
    with pytest.raises(FileExistsError, match="already holds an ingest with other parameters"):
        ingest(root, shards, image_size=8, progress=False)


def test_a_shard_left_without_marker_is_redone_once(ray_local, tmp_path):
    root = write_kaggle(tmp_path / "k", EXPERIMENTS)
    shards = tmp_path / "shards"
    ingest(root, shards, max_sites_per_shard=4, progress=False)
    (shards / "manifest.json").unlink()
    victim = sorted((shards / "shards").glob("*.done.json"))[3]
    victim.unlink()  # as if killed between writing the shard and its marker
    manifest = ingest(root, shards, max_sites_per_shard=4, progress=False)
    rows = _shard_rows(shards)
    assert rows["site_id"].is_unique and len(rows) == manifest["counts"]["listed"]


def test_an_ingest_killed_midway_resumes_with_every_site_once(ray_local, tmp_path):
    root = write_kaggle(tmp_path / "k", [f"HUVEC-{i:02d}" for i in range(1, 9)], size=64)
    shards = tmp_path / "shards"
    script = (f"from rxsweep.data.ingest import ingest; "
              f"ingest({str(root)!r}, {str(shards)!r}, max_sites_per_shard=1, progress=False)")
    child = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list((shards / "shards").glob("*.done.json"))) < 5:
            assert child.poll() is None, "ingest finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert not (shards / "manifest.json").exists()
    done_before = len(list((shards / "shards").glob("*.done.json")))
    manifest = ingest(root, shards, max_sites_per_shard=1, progress=False)
    rows = _shard_rows(shards)
    assert done_before < manifest["counts"]["listed"]
    assert rows["site_id"].is_unique
    assert sorted(rows["site_id"]) == sorted(load_sites(root)["site_id"])
    assert not list((shards / "shards").glob("*.tmp"))


def test_wilds_rgb_sites_are_three_channels_and_can_be_resized(ray_local, tmp_path):
    root = write_wilds(tmp_path / "w", ["HEPG2-01"])
    manifest = ingest(root, tmp_path / "shards", image_size=8, progress=False)
    assert (manifest["layout"], manifest["n_channels"], manifest["native_size"], manifest["image_size"]) == ("wilds", 3, 16, 8)
    image = _shard_rows(tmp_path / "shards")["image"].iloc[0]
    assert len(image) == 3 * 8 * 8 and np.frombuffer(image, np.uint8).reshape(3, 8, 8).dtype == np.uint8


def test_bad_metadata_fails_before_any_work(tmp_path):
    root = write_kaggle(tmp_path / "k", ["HEPG2-01"])
    frame = pd.read_csv(root / "train.csv")
    pd.concat([frame, frame.iloc[[0]]]).to_csv(root / "train.csv", index=False)
    with pytest.raises(ValueError, match="duplicate site"):
        ingest(root, tmp_path / "shards", progress=False)
    assert not (tmp_path / "shards").exists()


def test_verify_names_each_shard_that_is_not_what_the_manifest_says(damaged, tmp_path):
    """`rxsweep verify` (no Ray): the ingest's shards pass; a byte flipped inside one shard's image
    data (its Parquet footer intact), a shard cut short and a shard gone are each named, exit 1."""
    import shutil

    _, shards, manifest, _ = damaged
    rxsweep = str(Path(sys.executable).with_name("rxsweep"))
    intact = subprocess.run([rxsweep, "verify", str(shards)], capture_output=True, text=True, timeout=120)
    n = len(manifest["shards"])
    assert intact.returncode == 0 and f"verify: {n} of {n} shards match the manifest" in intact.stdout, intact.stdout

    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    flipped, cut, gone = (copy / s["file"] for s in manifest["shards"][:3])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the image column's pages
    flipped.write_bytes(bytes(data))
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    gone.unlink()
    done = subprocess.run([rxsweep, "verify", f"file://{copy}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    bad = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("BAD")}
    names = [s["file"] for s in manifest["shards"][:3]]
    assert set(bad) == set(names), done.stdout
    assert "sha256" in bad[names[0]] and "sha256" in bad[names[1]] and "missing" in bad[names[2]]
    assert f"verify: {n - 3} of {n} shards match the manifest" in done.stdout
