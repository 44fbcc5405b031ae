"""The streamed training split (materialize: false): each site once an epoch, a new seeded order
every epoch, batches that mix plates like a uniform shuffle, and a run that completes with Ray's
object store far smaller than the split.

One Ray for the module, its object store at Ray's minimum (75 MiB); the tiny synthetic preset
ingested at 224 x 224 (the training split is ~330 MB of pixels, 4-5x the store).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rxsweep.data.image_column import to_numpy
from rxsweep.data.ingest import ingest
from rxsweep.data.shard_stream import ShardStream
from rxsweep.data.splits import SplitSpec
from rxsweep.data.stream import open_shards, with_splits
from rxsweep.training.run_files import METRICS_FILE, read_history
from rxsweep.training.runner import train

IMAGE_SIZE = 224
STORE_BYTES = 75 << 20
SPEC = SplitSpec(val_experiments=("HUVEC-05", "RPE-05", "HEPG2-05", "U2OS-05"),
                 test_experiments=("HUVEC-06", "RPE-06", "HEPG2-06", "U2OS-06"))
BATCH = 32


@pytest.fixture(scope="module")
def small_store_ray():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=4, object_store_memory=STORE_BYTES, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def shards(small_store_ray, tmp_path_factory):
    from rxsweep.data.synth import generate

    tmp = tmp_path_factory.mktemp("shard-stream")
    root = generate(tmp / "data", layout="kaggle", preset="tiny", seed=0)
    ingest(root, tmp / "shards", image_size=IMAGE_SIZE, progress=False)
    return tmp / "shards"


@pytest.fixture(scope="module")
def index(shards):
    return with_splits(open_shards(shards), SPEC)


def _train_sites(index) -> np.ndarray:
    return index.table.index[index.table["split"] == "train"].to_numpy()


def _epoch(stream: ShardStream, epoch: int, **kw) -> list[dict]:
    return list(stream.batches(BATCH, seed=0, epoch=epoch, drop_last=False, **kw))


def test_a_streamed_epoch_yields_each_site_once_in_a_new_order_that_a_rerun_replays(index):
    sites = _train_sites(index)
    split_bytes = len(sites) * int(np.prod(index.image_shape))
    buffer = split_bytes // 8  # the stream holds an eighth of the split at a time
    stream = ShardStream(index, sites, buffer_bytes=buffer, threads=2)
    first = _epoch(stream, 1)
    order = np.concatenate([b["site_index"] for b in first])
    assert np.array_equal(np.sort(order), np.sort(sites))  # every site, once
    group_bytes = max(len(g.rows) for g in stream.groups) * np.prod(index.image_shape)
    assert stream.peak_bytes <= buffer + (1 + 2 * stream.threads) * group_bytes  # + reads ahead
    # the batch carries the site's own pixels and ids
    batch = first[3]
    table = index.table.loc[batch["site_index"]]
    for i, (shard, row) in enumerate(zip(table["shard"], table["row"])):
        pixels = to_numpy(pq.read_table(Path(index.root) / shard, columns=["image"])["image"].slice(row, 1),
                          index.image_shape)[0]
        assert np.array_equal(batch["image"][i], pixels)
    assert list(batch["label"]) == list(table["label"])
    assert list(np.array(index.plates)[batch["plate_id"]][:, 0]) == list(table["experiment"])

    second = np.concatenate([b["site_index"] for b in _epoch(stream, 2)])
    assert not np.array_equal(order, second) and np.array_equal(np.sort(second), np.sort(sites))
    assert (stream.order(0, 1) != stream.order(0, 2)).any()  # row groups come in a new order too
    # A new process resuming epoch 1 (a fresh stream) replays it batch for batch.
    rerun = _epoch(ShardStream(index, sites, buffer_bytes=buffer, threads=1), 1)
    assert all(np.array_equal(a["site_index"], b["site_index"]) for a, b in zip(first, rerun))


def _uniform_distinct(groups: np.ndarray, k: int) -> float:
    """Expected distinct values of ``groups`` among k rows drawn uniformly without replacement:
    sum over values v of 1 - C(N - n_v, k) / C(N, k) (the hypergeometric chance that v is missed)."""
    n = len(groups)
    sizes = np.unique(groups, return_counts=True)[1]
    return float(sum(1 - math.comb(n - s, k) / math.comb(n, k) for s in sizes))


def _mean_distinct(batches: list[dict], key: str) -> float:
    full = [b for b in batches if len(b[key]) == BATCH]
    return float(np.mean([len(np.unique(b[key])) for b in full]))


def test_streamed_batches_mix_plates_like_a_uniform_shuffle(index):
    sites = _train_sites(index)
    stream = ShardStream(index, sites, buffer_bytes=1024 << 20, threads=2)  # stream_buffer_mb's default
    plates = _uniform_distinct(stream.ids["plate_id"][sites], BATCH)
    experiments = _uniform_distinct(stream.ids["experiment_id"][sites], BATCH)
    assert plates > 20  # 64 training plates: a batch of a uniform shuffle holds ~25 of them
    mixed = _epoch(stream, 1)
    assert _mean_distinct(mixed, "plate_id") >= 0.9 * plates
    assert _mean_distinct(mixed, "experiment_id") >= 0.9 * experiments
    # Control: a buffer of one row group (here one plate slice) gives batches of 2-3 plates.
    group_bytes = max(len(g.rows) for g in stream.groups) * int(np.prod(index.image_shape))
    narrow = _epoch(ShardStream(index, sites, buffer_bytes=group_bytes), 1)
    assert _mean_distinct(narrow, "plate_id") < 0.25 * plates


def test_a_streamed_run_completes_with_an_object_store_far_smaller_than_the_split(index, shards, tmp_path):
    """The real run, streamed: a plain epoch, then one drawn by adaptive resampling from the stream."""
    sites = _train_sites(index)
    assert len(sites) * np.prod(index.image_shape) > 4 * STORE_BYTES
    out = tmp_path / "run"
    overrides = {"val_experiments": list(SPEC.val_experiments), "test_experiments": list(SPEC.test_experiments),
                 "materialize": False, "epochs": 2, "batch_size": BATCH, "crop": 64, "embedding_dim": 32,
                 "domain_label": "plate", "domain_width": 64, "resampling": "adaptive", "ar_bins": 25}
    final = train(shards, out, overrides=overrides, echo=False)
    history = read_history(out / METRICS_FILE)
    assert [m["epoch"] for m in history] == [1, 2] and final["step"] == 2 * (len(sites) // BATCH)  # whole epochs
    uniform = _uniform_distinct(ShardStream(index, sites, 1 << 20).ids["plate_id"][sites], BATCH)
    for epoch in history:  # reported, and mixed
        assert epoch["batch_plates"] >= 0.9 * uniform
        assert 1 <= epoch["batch_experiments"] <= epoch["batch_plates"]
    assert history[1]["ar_ess"] < 1  # epoch 2 was drawn by weights, not uniformly
    assert math.isfinite(final["train_loss"])


def test_a_damaged_shard_is_named_with_the_command_that_checks_them_all(shards, tmp_path):
    """Image pages zeroed behind an intact footer and manifest: the stream stops on that shard,
    naming it, its row group and `rxsweep verify` of the folder (not pyarrow's words alone)."""
    import shutil

    from rxsweep.data.errors import ShardReadError

    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    index = with_splits(open_shards(copy), SPEC)
    damaged = sorted((copy / "shards").glob("*.parquet"))[0]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 4: len(data) // 4 + 4096] = bytes(4096)
    damaged.write_bytes(bytes(data))
    sites = index.table.index[index.table["shard"] == f"shards/{damaged.name}"].to_numpy()
    with pytest.raises(ShardReadError, match=rf"{damaged}: row group 0 cannot be read .* `rxsweep verify {copy}`"):
        _epoch(ShardStream(index, sites, buffer_bytes=1 << 24, threads=1), 1)
