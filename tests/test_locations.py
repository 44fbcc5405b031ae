"""Locations (paths and URIs) and the mirror of a folder at a URI, on file:// URIs (pyarrow's local
filesystem behind the same calls an s3:// or gs:// URI makes). No Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rxsweep import locations
from rxsweep.mirror import REMOTE_FILE, Mirror, remove, staging_dir


def uri(path: Path) -> str:
    return f"file://{path}"


def files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".rxsweep-")}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("bad, says", [
    ("ftp://host/x", "unknown scheme ftp://"), ("s3:///no-bucket", "name the bucket"),
    ("file://otherhost/x", "file:///abs/path"), ("gs://bucket/a/../b", "'..'"),
    ("s3:/bucket/rxsweep", "not one .a URI is s3://bucket/path.; .* ./s3:/bucket/rxsweep"),
    ("gs:bucket", "looks like a URI"), ("file:/tmp/x", "file://bucket/path"),
])
def test_a_bad_uri_is_refused_with_what_to_write(bad, says):
    with pytest.raises(ValueError, match=says):
        locations.normalize(bad)


def test_a_uri_keeps_its_form_and_a_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert locations.normalize("s3://bucket/rxsweep/") == "s3://bucket/rxsweep"
    assert locations.normalize("results") == str(tmp_path / "results")
    assert locations.normalize("./s3:/b") == str(tmp_path / "s3:" / "b")  # a colon in a folder's name, said so
    assert locations.join("gs://b/sweeps", "tiny", "trials") == "gs://b/sweeps/tiny/trials"
    for escaping in ("../x", "/etc/passwd", "a/../../x"):  # names from metadata stay inside the root
        with pytest.raises(ValueError, match="leaves"):
            locations.join("s3://b/shards", escaping)


def test_files_read_through_a_uri_equal_the_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"site_id": ["a", "b", "c"], "x": [1, 2, 3]})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=2)
    write(tmp_path / "m.json", '{"k": [1, 2]}')
    assert locations.read_json(uri(tmp_path / "m.json")) == {"k": [1, 2]}
    assert locations.exists(uri(tmp_path / "t.parquet")) and not locations.exists(uri(tmp_path / "nope"))
    assert locations.read_table(uri(tmp_path / "t.parquet"), columns=["x"]).column("x").to_pylist() == [1, 2, 3]
    shard = locations.parquet_file(uri(tmp_path / "t.parquet"))
    assert shard.num_row_groups == 2 and shard.read_row_group(1).equals(table.slice(2))


def test_push_copies_what_changed_and_deletes_only_what_it_put_there(tmp_path):
    bucket, local = tmp_path / "bucket", tmp_path / "node-a"
    write(local / "metrics.jsonl", "epoch 1\n")
    write(local / "checkpoint_epoch0001/model.pt", "weights 1")
    write(local / ".partial-checkpoint_epoch0002/model.pt", "half")  # a checkpoint being written
    write(local / "status.json.123.456.tmp", "torn")  # an atomic write in progress
    mirror = Mirror(uri(bucket / "trial"), local)
    assert mirror.push() == 2
    assert files(bucket / "trial") == {"metrics.jsonl": "epoch 1\n", "checkpoint_epoch0001/model.pt": "weights 1"}
    assert mirror.push() == 0  # nothing changed

    write(bucket / "trial" / "status.json", "written by the driver")  # not this mirror's
    write(local / "metrics.jsonl", "epoch 2\n")  # the same size, another content
    os.utime(local / "metrics.jsonl", ns=(1, 1))
    write(local / "checkpoint_epoch0002/model.pt", "weights 2")
    remove(local / "checkpoint_epoch0001")  # pruned, as a run prunes its checkpoints
    assert mirror.push() == 2
    assert files(bucket / "trial") == {"metrics.jsonl": "epoch 2\n", "checkpoint_epoch0002/model.pt": "weights 2",
                                       "status.json": "written by the driver"}
    assert not (bucket / "trial" / "checkpoint_epoch0001").exists()  # no empty checkpoint folder left


def test_pull_on_another_node_gets_the_folder_and_follows_its_changes(tmp_path, monkeypatch):
    bucket = tmp_path / "bucket"
    write(bucket / "trial/metrics.jsonl", "epoch 1\n")
    write(bucket / "trial/checkpoint_epoch0001/model.pt", "weights 1")
    write(bucket / "trial/tune/result.json", "Ray's own")
    monkeypatch.setenv("RXSWEEP_STAGING", str(tmp_path / "staging-b"))
    mirror = Mirror(uri(bucket / "trial"), skip=["tune"])
    assert mirror.local == staging_dir(uri(bucket / "trial")) and mirror.local.is_relative_to(tmp_path / "staging-b")
    assert mirror.pull() == 2
    assert files(mirror.local) == {"metrics.jsonl": "epoch 1\n", "checkpoint_epoch0001/model.pt": "weights 1"}
    assert (mirror.local / REMOTE_FILE).read_text().strip() == uri(bucket / "trial")
    assert Mirror.of(mirror.local).uri == mirror.uri and Mirror.of(tmp_path) is None
    assert mirror.pull() == 0

    write(bucket / "trial/metrics.jsonl", "epoch 1\nepoch 2\n")
    write(bucket / "trial/checkpoint_epoch0002/model.pt", "weights 2")
    (bucket / "trial/checkpoint_epoch0001/model.pt").unlink()
    assert mirror.pull() == 2
    assert files(mirror.local) == {"metrics.jsonl": "epoch 1\nepoch 2\n", "checkpoint_epoch0002/model.pt": "weights 2"}
    assert not (mirror.local / "checkpoint_epoch0001").exists()
    # a change made here and not pushed yet survives a pull, and the next push sends it
    write(mirror.local / "metrics.jsonl", "epoch 1\nepoch 2\nepoch 3\n")
    assert mirror.pull() == 0 and (mirror.local / "metrics.jsonl").read_text().endswith("epoch 3\n")
    assert mirror.push() == 1 and (bucket / "trial/metrics.jsonl").read_text().endswith("epoch 3\n")
    assert not (bucket / "trial/.rxsweep-sync.json").exists()  # the mirror's own files stay local


def test_a_push_cut_short_leaves_what_a_writer_killed_then_would_have(tmp_path, monkeypatch):
    """Files go up in the order they were written: a checkpoint's files before the metrics line of
    its epoch, its history (written last) last; a checkpoint folder without it is not resumed from."""
    from rxsweep.training import run_files

    bucket, local = tmp_path / "bucket", tmp_path / "node-a"
    written = ["checkpoint_epoch0002/embeddings.parquet", "checkpoint_epoch0002/state.pt",
               f"checkpoint_epoch0002/{run_files.HISTORY_FILE}", run_files.METRICS_FILE]
    for i, rel in enumerate(written):
        write(local / rel, rel)
        os.utime(local / rel, ns=(10**9 * (i + 1), 10**9 * (i + 1)))
    mirror = Mirror(uri(bucket / "trial"), local)
    upload, calls = Mirror._upload, []

    def killed_after_two(self, path, remote):
        if len(calls) == 2:
            raise KeyboardInterrupt("the node went away")
        calls.append(path)
        upload(self, path, remote)

    monkeypatch.setattr(Mirror, "_upload", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        mirror.push()
    assert sorted(files(bucket / "trial")) == sorted(written[:2])
    assert run_files.checkpoints(bucket / "trial") == []  # no half checkpoint to resume from
    monkeypatch.setattr(Mirror, "_upload", upload)
    assert mirror.push() == 4 and sorted(files(bucket / "trial")) == sorted(written)
    assert run_files.checkpoints(bucket / "trial") == [bucket / "trial" / "checkpoint_epoch0002"]


def test_a_partial_upload_left_by_a_killed_push_goes_when_its_file_is_pushed_whole(tmp_path):
    bucket, local = tmp_path / "bucket", tmp_path / "node-a"
    write(bucket / "trial/checkpoint_epoch0002/state.pt.4242.tmp", "the first MB of a killed upload")
    write(bucket / "trial/other.pt.4242.tmp", "another file's partial, not pushed now")
    write(local / "checkpoint_epoch0002/state.pt", "weights 2")
    mirror = Mirror(uri(bucket / "trial"), local)
    assert mirror.push() == 1
    assert files(bucket / "trial") == {"checkpoint_epoch0002/state.pt": "weights 2",
                                       "other.pt.4242.tmp": "another file's partial, not pushed now"}


def test_a_staging_folder_emptied_behind_the_mirrors_back_deletes_nothing_at_the_uri(tmp_path):
    """Deletion comes from what the process removed itself (remove()), never from absence: a tmp
    cleaner or a hand that empties half the staging folder costs nothing at the URI, and the next
    pull brings the files back."""
    bucket, local = tmp_path / "bucket", tmp_path / "node-a"
    for i in range(6):
        write(local / f"checkpoint_epoch000{i}/state.pt", f"weights {i}")
    mirror = Mirror(uri(bucket / "trial"), local)
    assert mirror.push() == 6
    synced = files(bucket / "trial")
    for i in range(3):
        (local / f"checkpoint_epoch000{i}/state.pt").unlink()
    assert mirror.push() == 0 and files(bucket / "trial") == synced
    assert mirror.pull() == 3 and files(local) == synced


def test_a_pull_refuses_a_key_that_would_land_outside_the_staging_folder(tmp_path):
    bucket, local, outside = tmp_path / "bucket", tmp_path / "node-a", tmp_path / "outside"
    write(bucket / "trial/trials/t1/metrics.jsonl", "written at the URI")
    outside.mkdir()
    (local / "trials").mkdir(parents=True)
    (local / "trials" / "t1").symlink_to(outside)  # a symlink in the way
    with pytest.raises(ValueError, match="refusing to pull key 'trials/t1/metrics.jsonl'"):
        Mirror(uri(bucket / "trial"), local).pull()
    assert list(outside.iterdir()) == []
    mirror = Mirror(uri(bucket / "other"), tmp_path / "node-b")
    for key in ("../escape.txt", "a/../../escape.txt", "/etc/passwd"):  # keys an object store can hold
        with pytest.raises(ValueError, match="outside the staging folder"):
            mirror._inside(key)


def test_clean_staging_removes_only_folders_whose_files_are_all_at_their_uri(tmp_path):
    from rxsweep.mirror import clean_staging

    bucket, root = tmp_path / "bucket", tmp_path / "staging"
    done, unpushed, changed = (Mirror(uri(bucket / name), root / name) for name in ("done", "unpushed", "changed"))
    for mirror in (done, unpushed, changed):
        write(mirror.local / "metrics.jsonl", "epoch 1\n")
        mirror.push()
    write(unpushed.local / "checkpoint_epoch0002/state.pt", "not at the URI yet")
    write(bucket / "changed" / "metrics.jsonl", "epoch 1\nepoch 2 from another node\n")
    recent = {folder.name: why for folder, _, why in clean_staging(root)}  # a sweep may be running in them
    assert all("written recently" in why for why in recent.values()) and len(recent) == 3
    kept = {folder.name: why for folder, _, why in clean_staging(root, idle_s=0)}
    assert kept["done"] is None and not (root / "done").exists()
    assert "not pushed" in kept["unpushed"] and "differ at" in kept["changed"]
    assert files(bucket / "done") == {"metrics.jsonl": "epoch 1\n"}  # the URI keeps everything
