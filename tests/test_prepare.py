"""What `--data` names, told apart before any work: a shard folder whose manifest is missing or
damaged is said to be one, with the file and the command that finishes it. No Ray."""

from __future__ import annotations

import pytest

from rxsweep.data.ingest import MANIFEST
from rxsweep.data.prepare import prepare_data
from rxsweep.data.stream import open_shards


def test_shards_without_a_manifest_are_named_a_shard_folder_with_the_fix(tmp_path):
    (tmp_path / "shards" / "shards").mkdir(parents=True)
    (tmp_path / "shards" / "shards" / "HUVEC-01_P1_0.parquet").write_bytes(b"PAR1")
    with pytest.raises(ValueError, match=f"is a shard folder without {MANIFEST}.*rxsweep ingest --data RXRX1_FOLDER"):
        prepare_data(tmp_path / "shards", tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_a_damaged_manifest_is_named(tmp_path):
    (tmp_path / MANIFEST).write_text('{"format": "rxsweep-shards/2", "shards": [')
    with pytest.raises(ValueError, match=f"{tmp_path / MANIFEST}: not valid JSON"):
        open_shards(tmp_path)
