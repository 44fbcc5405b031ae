"""Object-store memory and plate mixing of one streamed training epoch (materialize: false).

One epoch over every labelled site of the `small` preset (no experiment held out: 2,304 sites, 3.4
GiB of pixels at its native 512x512x6; the whole preset is 5.6 GiB), batch 64, in a Ray whose
object store is capped below it (1 GiB by default), read the way a Train worker reads it, in a Ray
task of its own:

    rxsweep    the worker's ShardStream (row groups in a (seed, epoch) permutation, read by its
               threads, batches drawn from a pool of row groups: rxsweep.data.shard_stream)
    baseline   the Ray Data stream rxsweep used before (its shard datasource,
               randomize_block_order, a local shuffle buffer of 256 rows), in the same Ray

While each runs, the driver samples the object store's bytes in use from Ray's own accounting
(the raylet's store stats, what `ray memory --stats-only` prints) every 0.1 s. Mixing is the mean
number of distinct plates and experiments in a batch, against its expectation under a uniform
shuffle of the split (hypergeometric, computed from the split's own plate sizes).

    python bench/stream_memory.py [--store-gib 1] [--batch-size 64] [--threads 2] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np

from rxsweep.data.prepare import prepare_synthetic
from rxsweep.data.splits import SplitSpec
from rxsweep.data.stream import open_shards, with_splits
from rxsweep.training.config import TrainConfig

CACHE = Path(__file__).parent / ".cache"


def store_bytes_used() -> int:
    """Object-store bytes in use across the cluster, from the raylet's store stats."""
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    return int(get_memory_info_reply(get_state_from_address()).store_stats.object_store_bytes_used)


class Sampler:
    """Samples store_bytes_used() on a thread until stopped; keeps the peak."""

    def __init__(self, every_s: float = 0.1):
        self.every_s, self.peak, self.samples = every_s, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, store_bytes_used())
            self.samples += 1
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def uniform_distinct(groups: np.ndarray, k: int) -> float:
    """Expected distinct values among k of ``groups`` drawn uniformly without replacement."""
    n, sizes = len(groups), np.unique(groups, return_counts=True)[1]
    return float(sum(1 - math.comb(n - s, k) / math.comb(n, k) for s in sizes))


def one_epoch(index, sites, cfg: TrainConfig, streamed: bool) -> dict:
    """A Train worker's epoch of uint8 batches (no model): seconds, first batch, mixing, memory."""
    import resource

    from rxsweep.data.shard_stream import ShardStream
    from rxsweep.data.stream import split_dataset

    started = time.perf_counter()
    if streamed:
        stream = ShardStream(index, sites, cfg.stream_buffer_mb << 20,
                             threads=max(1, int(cfg.cpus_per_worker)))
        batches = stream.batches(cfg.batch_size, cfg.seed, epoch=1)
    else:
        dataset = split_dataset(index, "train").randomize_block_order(seed=cfg.seed)
        batches = dataset.iter_batches(batch_size=cfg.batch_size, batch_format="numpy", drop_last=True,
                                       local_shuffle_buffer_size=cfg.shuffle_buffer, local_shuffle_seed=1)
    first, plates, experiments, sites = None, [], [], 0
    for batch in batches:
        first = first or time.perf_counter() - started
        plates.append(len(np.unique(batch["plate_id"])))
        experiments.append(len(np.unique(batch["experiment_id"])))
        sites += len(batch["plate_id"])
    return {"seconds": time.perf_counter() - started, "first_batch_s": first, "sites": sites,
            "plates": float(np.mean(plates)), "experiments": float(np.mean(experiments)),
            "stream_peak_bytes": stream.peak_bytes if streamed else None,
            "worker_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-gib", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="reader threads (the worker's CPUs)")
    parser.add_argument("--buffer-mb", type=int, default=TrainConfig().stream_buffer_mb)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    import ray

    shards = Path(prepare_synthetic(CACHE, preset="small", progress=False))
    cfg = TrainConfig(materialize=False, batch_size=args.batch_size, cpus_per_worker=args.threads,
                      stream_buffer_mb=args.buffer_mb)
    index = with_splits(open_shards(shards), SplitSpec(n_val_per_cell_type=0, n_test_per_cell_type=0,
                                                       holdout_fraction=0.0))
    sites = index.table.index[index.table["split"] == "train"].to_numpy()
    table = index.table.loc[sites]
    site_bytes = int(np.prod(index.image_shape))
    store = int(args.store_gib * (1 << 30))
    ray.init(num_cpus=args.threads + 1, object_store_memory=store, include_dashboard=False,
             log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    worker = ray.remote(num_cpus=args.threads)(one_epoch)

    results = {}
    for name, streamed in (("rxsweep", True), ("baseline", False)):
        if name == "baseline" and args.no_baseline:
            continue
        with Sampler() as sampler:
            results[name] = ray.get(worker.remote(index, sites, cfg, streamed))
        results[name]["peak_object_store_bytes"] = sampler.peak
        results[name]["samples"] = sampler.samples
    ours = results["rxsweep"]
    plates = uniform_distinct(table["plate"].astype(str).radd(table["experiment"] + "/").to_numpy(), args.batch_size)
    experiments = uniform_distinct(table["experiment"].to_numpy(), args.batch_size)
    dataset_bytes = len(sites) * site_bytes
    line = {
        "benchmark": "stream_memory", "image": list(index.image_shape), "sites": ours["sites"],
        "batch_size": args.batch_size, "reader_threads": args.threads, "cpus": os.cpu_count(),
        "object_store_cap_bytes": store, "dataset_bytes": dataset_bytes,
        "preset_bytes": len(index.table) * site_bytes,
        "peak_object_store_bytes": ours["peak_object_store_bytes"],
        "ratio": round(ours["peak_object_store_bytes"] / dataset_bytes, 4),
        "stream_buffer_bytes": args.buffer_mb << 20, "stream_peak_bytes": ours["stream_peak_bytes"],
        "worker_max_rss_bytes": ours["worker_max_rss_bytes"],
        "distinct_plates_per_batch": round(ours["plates"], 2), "uniform_plates_per_batch": round(plates, 2),
        "plates_vs_uniform": round(ours["plates"] / plates, 3),
        "distinct_experiments_per_batch": round(ours["experiments"], 2),
        "uniform_experiments_per_batch": round(experiments, 2),
        "experiments_vs_uniform": round(ours["experiments"] / experiments, 3),
        "epoch_s": round(ours["seconds"], 1), "first_batch_s": round(ours["first_batch_s"], 2),
        "sites_per_s": round(ours["sites"] / ours["seconds"], 1),
    }
    if "baseline" in results:
        base = results["baseline"]
        line.update({
            "baseline_peak_object_store_bytes": base["peak_object_store_bytes"],
            "baseline_ratio": round(base["peak_object_store_bytes"] / dataset_bytes, 4),
            "baseline_distinct_plates_per_batch": round(base["plates"], 2),
            "baseline_distinct_experiments_per_batch": round(base["experiments"], 2),
            "baseline_epoch_s": round(base["seconds"], 1), "baseline_first_batch_s": round(base["first_batch_s"], 2),
            "baseline_worker_max_rss_bytes": base["worker_max_rss_bytes"],
        })
    print(json.dumps(line))
    ray.shutdown()


if __name__ == "__main__":
    main()
