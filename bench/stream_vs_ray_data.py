"""uint8 training batches per CPU-second: rxsweep's ShardStream against Ray Data set up for training.

Both paths deliver the same training sites of the `small` preset at its native 512x512x6 (every
labelled site, no experiment held out, as stream_memory.py: 2,304 sites, 3.4 GiB of pixels) as
uint8 torch batches [B, 6, 512, 512] (batch 32 a worker, drop_last) plus the id columns a training
step reads, to 2 consumers in 2 Ray actors of 1 CPU each, as 2 Train workers would take them:

    rxsweep    each actor builds ShardStream(index, plan.train_sites(rank, 2), 1 GiB, threads=1) as
               training/loop.py does and iterates as_torch(stream.batches(32, seed, epoch, rank))
    ray_data   the documented ingest without a global shuffle: read_parquet over the same shard
               files with shuffle=FileShuffleConfig(seed, reseed_after_execution=True) (a new seeded
               file order each epoch), the image column viewed as a uint8 tensor and names turned
               into ids in a map_batches fused into the read, split as Ray Train splits a dataset
               (ray.train.DataConfig().configure: streaming_split(2, equal=True)), and each actor
               iterating iter_torch_batches(batch_size=32, drop_last=True, prefetch_batches=2,
               local_shuffle_buffer_size=682, local_shuffle_seed=derive_seed(seed, epoch, rank, 100))
               as training/loop.py does. 682 rows = 1 GiB of images: the same bytes as ShardStream's
               pool (Ray's docs give no number; they say "the smallest value that gives enough
               randomness"). Ray Data is told the 2 actors' CPUs are taken (exclude_resources) and
               reads with what is left (2 CPUs).

Ray runs here with 6 logical CPUs (4 held by the actors, 2 for Ray Data's read tasks) on the
machine's cores, and an object store of --store-gib (4 by default: Ray Data's shuffle buffer keeps
its blocks in the store, up to 1.5x its rows a consumer, before it compacts them).

Each path runs a warm-up epoch (epoch 0), then 2 timed epochs, alternating the paths (rxsweep 1,
ray_data 1, rxsweep 2, ray_data 2); the best of the 2 is reported (this machine is shared), with
`ratio` = rxsweep's batches per CPU-second / Ray Data's. CPU-seconds of an epoch = user + system
time gained by the driver and every process below it (gcs_server, raylet and its workers: the
actors, Ray Data's read tasks, SplitCoordinator and FooterReader actors, Ray's agents), from psutil
before and after the epoch and every 0.1 s in between (a process that ends during the epoch counts
as last seen). The benchmark's own watching thread is taken out of the driver's share.
Ray's background (raylet, GCS, agents, Ray Data's idle actors) runs whichever path streams: it is
measured over 10 idle seconds, and `ratio_less_idle` takes it out of both (it grows with wall time).

Peak object-store bytes come from a third epoch of each path (epoch 3), with the raylet's store
stats sampled every 0.1 s as stream_memory.store_bytes_used reads them; the timed epochs do not
sample (each sample is an RPC the raylet forwards to every worker). Before each epoch the driver
waits for the store to empty. Mixing: mean distinct plates and experiments in a batch, against a
uniform shuffle of the split (stream_memory.uniform_distinct). CPU-seconds are split by process
kind, and, unless --no-stages, single extra epochs measure the stages: ShardStream's reads alone
(the worker's row groups read, never batched); Ray Data's listing with the site_id column alone
(the cost of an epoch without its pixels), its read alone (blocks made and dropped by the driver),
read + streaming_split with whole blocks to the workers, and + batches of 32 without the shuffle.
`ray_data.sites_per_cpu_s_less_listing` takes the epoch's own listing (ListFiles and its
FooterReader actors) out of Ray Data's CPU-seconds: its rate on a split so large that a listing an
epoch no longer counts.

    python bench/stream_vs_ray_data.py [--sites N] [--batch-size 32] [--store-gib 4] [--no-stages]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from rxsweep import locations
from rxsweep.data.prepare import prepare_synthetic
from rxsweep.data.shard_stream import _row_groups
from rxsweep.data.splits import SplitSpec
from rxsweep.data.stream import ShardIndex, open_shards, with_splits
from rxsweep.training.config import TrainConfig
from rxsweep.training.loop import derive_seed
from rxsweep.training.plan import RunPlan
from cpu_watch import Store, Watch, summary
from stream_memory import CACHE, uniform_distinct

WORKERS = 2
READ_COLUMNS = ["site_id", "experiment", "plate", "cell_type", "well_type", "label", "image"]
# ---------------------------------------------------------------- what a Train worker does
def consume(batches, blocks: bool = False, first_ids: int = 8) -> dict:
    """Iterate one epoch's batches as a training loop would (no model): counts, mixing, ids."""
    import torch

    started, first, n, rows, plates, experiments, seen = time.perf_counter(), None, 0, 0, [], [], []
    for batch in batches:
        first = first or time.perf_counter() - started
        n += 1
        if not blocks:  # torch batches: what a training step gets
            assert batch["image"].dtype == torch.uint8 and batch["image"].ndim == 4
            rows += len(batch["image"])
            plates.append(batch["plate_id"].unique().numel())
            experiments.append(batch["experiment_id"].unique().numel())
            seen.append(batch["site_index"].numpy().copy())
        else:  # a block (a pyarrow table or a row-group dict): the read-only stages
            rows += batch.num_rows if hasattr(batch, "num_rows") else len(batch["image"])
    seen = np.concatenate(seen) if seen else np.empty(0, np.int64)
    return {"seconds": time.perf_counter() - started, "first_batch_s": first, "batches": n, "rows": rows,
            "plates": float(np.mean(plates)) if plates else None,
            "experiments": float(np.mean(experiments)) if experiments else None,
            "site_index": seen, "first_ids": seen[:first_ids].tolist(), "pid": os.getpid()}


class StreamWorker:
    """rxsweep: the worker's own ShardStream, built once as loop.py builds it."""

    def __init__(self, index: ShardIndex, sites: np.ndarray, buffer_bytes: int, threads: int, rank: int):
        from rxsweep.data.shard_stream import ShardStream

        self.stream, self.rank = ShardStream(index, sites, buffer_bytes, threads=threads), rank

    def epoch(self, epoch: int, mode: str, batch_size: int, seed: int) -> dict:
        from rxsweep.data.shard_stream import _Budget
        from rxsweep.data.weighted_batches import as_torch

        if mode == "blocks":  # the reads alone: every row group of the worker, never batched
            order = self.stream.order(seed, epoch, self.rank)
            return consume(self.stream.blocks(order, _Budget(1 << 62)), blocks=True)
        return consume(as_torch(self.stream.batches(batch_size, seed, epoch, self.rank)))

    def max_rss(self) -> int:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class DataWorker:
    """Ray Data: the worker's streaming_split shard, iterated as loop.py iterates a dataset shard."""

    def __init__(self, shard, rank: int):
        self.shard, self.rank = shard, rank

    def epoch(self, epoch: int, mode: str, batch_size: int, seed: int, shuffle_rows: int) -> dict:
        if mode == "blocks":  # read + split: whole blocks to the worker, no batching, no shuffle
            return consume(self.shard.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2),
                           blocks=True)
        shuffle = mode == "full" and shuffle_rows > 0
        return consume(self.shard.iter_torch_batches(
            batch_size=batch_size, drop_last=True, prefetch_batches=2,
            local_shuffle_buffer_size=shuffle_rows if shuffle else None,
            local_shuffle_seed=derive_seed(seed, epoch, self.rank, 100) % 2**32 if shuffle else None))

    def max_rss(self) -> int:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def encode(table, shape, experiments, plates, cell_types, site_ids):
    """A read block -> the columns a batch carries (stream.BATCH_COLUMNS): the image column viewed
    as a uint8 tensor (no copy), names turned into ids; what rxsweep's own datasource does."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from rxsweep.data.image_column import as_tensor

    plate_key = pc.binary_join_element_wise(table["experiment"], pc.cast(table["plate"], pa.string()), "/")
    ids = lambda values, vocab: pc.cast(pc.index_in(values, value_set=vocab), pa.int64())  # noqa: E731
    return pa.table({
        "image": as_tensor(table["image"], shape), "label": table["label"],
        "experiment_id": ids(table["experiment"], experiments), "plate_id": ids(plate_key, plates),
        "cell_type_id": ids(table["cell_type"], cell_types),
        "is_treatment": pc.cast(pc.equal(table["well_type"], "treatment"), pa.int64()),
        "site_index": ids(table["site_id"], site_ids),
    })


def ray_dataset(files: list[str], index: ShardIndex, seed: int, ids_only: bool = False):
    """The shard files, a seeded new file order each epoch, encoded in the read tasks.
    ``ids_only``: read the site_id column alone (what an epoch costs without its pixels)."""
    import pyarrow as pa
    import ray
    from ray.data import FileShuffleConfig

    fn = functools.partial(encode, shape=index.image_shape, experiments=pa.array(index.experiments),
                           plates=pa.array([f"{e}/{p}" for e, p in index.plates]),
                           cell_types=pa.array(index.cell_types), site_ids=pa.array(index.table["site_id"]))
    dataset = ray.data.read_parquet(files, shuffle=FileShuffleConfig(seed=seed, reseed_after_execution=True))
    if ids_only:
        return dataset.select_columns(["site_id"])
    return dataset.select_columns(READ_COLUMNS).map_batches(fn, batch_format="pyarrow", batch_size=None,
                                                            zero_copy_batch=True, udf_modifying_row_count=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=None,
                        help="only the training shards (whole files) holding the first ~N sites, for a quick run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--buffer-mb", type=int, default=TrainConfig().stream_buffer_mb,
                        help="ShardStream's pool; Ray Data's shuffle buffer gets the same bytes in rows")
    parser.add_argument("--threads", type=int, default=1, help="ShardStream reader threads (a worker's CPUs)")
    parser.add_argument("--store-gib", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shards", default=None, help="a shard folder instead of the small preset (testing)")
    parser.add_argument("--no-stages", action="store_true")
    args = parser.parse_args()

    import ray
    from ray.data import DataContext, ExecutionResources

    shards = args.shards or prepare_synthetic(CACHE, preset="small", progress=False)
    index = with_splits(open_shards(shards), SplitSpec(n_val_per_cell_type=0, n_test_per_cell_type=0,
                                                       holdout_fraction=0.0))
    table = index.table
    train = table[table["split"] == "train"]
    if args.sites:  # whole shards, in a seeded order, until ~N sites: both paths read the same files
        order = np.random.default_rng(args.seed).permutation(sorted(train["shard"].unique()))
        sizes = train.groupby("shard").size()
        keep = order[: int(np.searchsorted(np.cumsum(sizes[order].to_numpy()), args.sites)) + 1]
        table.loc[(table["split"] == "train") & ~table["shard"].isin(keep), "split"] = "unlabeled"
        train = table[table["split"] == "train"]
    files = sorted(train["shard"].unique())
    mixed = table[table["shard"].isin(files) & (table["split"] != "train")]
    if len(mixed):
        raise RuntimeError("a training shard holds sites of another split; this benchmark reads whole files")
    paths = [locations.join(index.root, f) for f in files]
    site_bytes = int(np.prod(index.image_shape))
    shuffle_rows = (args.buffer_mb << 20) // site_bytes
    # RunPlan.train_sites is the partition loop.py streams; it reads only the index and split_seed.
    plan = RunPlan(index=index, in_channels=index.n_channels, input_size=index.image_size,
                   n_classes=index.n_classes, split_sizes={}, domain_lut=[], domain_names=[],
                   steps_per_epoch=0, total_steps=0, backbone_kwargs={}, split_seed=0)
    parts = [plan.train_sites(rank, WORKERS) for rank in range(WORKERS)]

    started = time.perf_counter()
    ray.init(num_cpus=2 * WORKERS + 2, object_store_memory=int(args.store_gib * (1 << 30)),
             include_dashboard=False, log_to_driver=False)
    store = Store()
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.exclude_resources = ExecutionResources(cpu=2 * WORKERS)  # the actors' CPUs
    dataset = ray_dataset(paths, index, args.seed)
    from ray.train import DataConfig  # how Ray Train V2 hands each worker its shard (DatasetManager)

    node = ray.get_runtime_context().get_node_id()
    splits = DataConfig().configure({"train": dataset}, world_size=WORKERS, worker_handles=None,
                                    worker_node_ids=[node] * WORKERS)
    stream_actors = [ray.remote(num_cpus=1)(StreamWorker).remote(index, parts[r], args.buffer_mb << 20,
                                                                   args.threads, r) for r in range(WORKERS)]
    data_actors = [ray.remote(num_cpus=1)(DataWorker).remote(splits[r]["train"], r) for r in range(WORKERS)]
    pids = {"rxsweep": set(), "ray_data": set()}
    calls = {
        "rxsweep": lambda e, mode="full": [a.epoch.remote(e, mode, args.batch_size, args.seed) for a in stream_actors],
        "ray_data": lambda e, mode="full": [a.epoch.remote(e, mode, args.batch_size, args.seed, shuffle_rows)
                                           for a in data_actors],
    }

    def drain(below: int = 64 << 20, wait_s: float = 20.0) -> int:
        """Wait (outside the timing) for the previous epoch's blocks to leave the store."""
        deadline = time.perf_counter() + wait_s
        while (used := int(store.stats().object_store_bytes_used)) > below and time.perf_counter() < deadline:
            time.sleep(0.2)
        return used

    def epoch(path: str, e: int, mode: str = "full", sample_store: bool = False) -> tuple[list[dict], dict]:
        at_start = drain()
        with Watch(store, pids[path], sample_store) as watch:
            results = ray.get(calls[path](e, mode))
        pids[path] |= {r["pid"] for r in results}
        stats = {**summary(results, watch), "store_bytes_at_start": at_start}
        print(f"{path} epoch {e} {mode}: {stats['wall_s']} s, {stats['cpu_s']} CPU-s, {stats['rows']} sites, "
              f"store peak {stats['peak_object_store_bytes']}", file=sys.stderr, flush=True)
        return results, stats

    for path in pids:  # warm-up (epoch 0): workers started, imports done, pids known
        epoch(path, 0)
    timed = {path: [] for path in pids}
    for e in (1, 2):  # CPU and wall, without sampling the store (each sample is an RPC to every worker)
        for path in pids:
            timed[path].append(epoch(path, e))
    best = {path: max(runs, key=lambda run: run[1]["batches_per_cpu_s"]) for path, runs in timed.items()}
    drain()
    with Watch(store, set()) as idle:  # Ray's own background, with every actor alive and idle
        time.sleep(10)
    idle_rate = idle.cpu / idle.wall
    sampled = {path: epoch(path, 3, sample_store=True)[1] for path in pids}  # the store's peak

    split_sites = train.index.to_numpy()
    plates = uniform_distinct((train["experiment"] + "/" + train["plate"].astype(str)).to_numpy(), args.batch_size)
    experiments = uniform_distinct(train["experiment"].to_numpy(), args.batch_size)
    line = {"benchmark": "stream_vs_ray_data", "image": list(index.image_shape), "split_sites": len(split_sites),
            "shard_files": len(files), "batch_size": args.batch_size, "workers": WORKERS,
            "stream_threads": args.threads, "stream_buffer_bytes": args.buffer_mb << 20,
            "local_shuffle_buffer_rows": shuffle_rows, "object_store_cap_bytes": int(args.store_gib * (1 << 30)),
            "cpus": os.cpu_count(), "idle_cpu_s_per_s": round(idle_rate, 3),
            "idle_cpu_s_per_s_by_process": {k: round(v / idle.wall, 3) for k, v in sorted(idle.by_kind.items())},
            "uniform_plates_per_batch": round(plates, 2),
            "uniform_experiments_per_batch": round(experiments, 2)}
    for path, (results, stats) in best.items():
        seen = np.concatenate([r["site_index"] for r in results])
        runs = timed[path]
        line[path] = {
            **{k: v for k, v in stats.items() if k not in ("peak_object_store_bytes", "spilled_bytes")},
            "peak_object_store_bytes": sampled[path]["peak_object_store_bytes"],
            "spilled_bytes": sampled[path]["spilled_bytes"],
            "store_sampled_epoch": {k: sampled[path][k] for k in ("cpu_s", "wall_s", "store_bytes_at_start")},
            "batches_per_cpu_s_both_epochs": [run[1]["batches_per_cpu_s"] for run in runs],
            "batches_per_cpu_s_less_idle": round(stats["batches"] / (stats["cpu_s"] - idle_rate * stats["wall_s"]), 3),
            "distinct_plates_per_batch": round(float(np.mean([r["plates"] for r in results])), 2),
            "plates_vs_uniform": round(float(np.mean([r["plates"] for r in results])) / plates, 3),
            "distinct_experiments_per_batch": round(float(np.mean([r["experiments"] for r in results])), 2),
            "experiments_vs_uniform": round(float(np.mean([r["experiments"] for r in results])) / experiments, 3),
            "sites_delivered": int(len(seen)), "distinct_sites": int(len(np.unique(seen))),
            "sites_not_in_split": int(len(np.setdiff1d(seen, split_sites))),
            "order_changes_between_epochs": all(a["first_ids"] != b["first_ids"]
                                                for a, b in zip(runs[0][0], runs[1][0])),
            "worker_max_rss_bytes": max(ray.get([a.max_rss.remote() for a in
                                                 (stream_actors if path == "rxsweep" else data_actors)])),
        }
    # read_parquet lists the files again every epoch, on FooterReader actors it starts and kills.
    data = line["ray_data"]
    listing = sum(data["cpu_s_by_process"].get(k, 0.0) for k in ("listing", "ended_while_starting"))
    data["listing_cpu_s"] = round(listing, 2)
    data["sites_per_cpu_s_less_listing"] = round(data["rows"] / (data["cpu_s"] - listing), 1)
    line["ratio"] = round(line["rxsweep"]["batches_per_cpu_s"] / line["ray_data"]["batches_per_cpu_s"], 3)
    line["ratio_less_idle"] = round(line["rxsweep"]["batches_per_cpu_s_less_idle"]
                                    / line["ray_data"]["batches_per_cpu_s_less_idle"], 3)
    line["wall_ratio"] = round(line["ray_data"]["wall_s"] / line["rxsweep"]["wall_s"], 3)
    # ShardStream's 2 parts are drawn site by site, so each worker decompresses whole row groups
    # of which it keeps about half: sites decompressed per site delivered.
    group_sites = {}
    for part in parts:
        for g in _row_groups(index.root, index.table.loc[part]):
            group_sites[(g.path, g.group)] = group_sites.get((g.path, g.group), 0) + 1
    rows_in_groups = sum(locations.parquet_file(p).metadata.row_group(g).num_rows * n
                         for (p, g), n in group_sites.items())
    line["rxsweep"]["sites_decompressed_per_site"] = round(rows_in_groups / len(split_sites), 2)

    if not args.no_stages:
        stages = {"rxsweep_reads_only": epoch("rxsweep", 4, "blocks")[1],
                  "ray_data_split_blocks": epoch("ray_data", 4, "blocks")[1],
                  "ray_data_split_batches_no_shuffle": epoch("ray_data", 5, "batches")[1]}
        for name, ds in (("ray_data_read_only", dataset),
                         ("ray_data_list_and_ids_only", ray_dataset(paths, index, args.seed, ids_only=True))):
            at_start = drain()
            with Watch(store, set()) as watch:  # blocks made, handed to the driver, dropped unread
                rows = sum(bundle.num_rows() for bundle in ds.iter_internal_ref_bundles())
            stages[name] = {**summary([{"batches": 0, "rows": rows, "first_batch_s": None}], watch),
                            "store_bytes_at_start": at_start}
        line["stages"] = {name: {k: v for k, v in s.items() if k not in (
            "batches", "batches_per_cpu_s", "peak_object_store_bytes", "spilled_bytes")} for name, s in stages.items()}
    line["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(line))
    ray.shutdown()


if __name__ == "__main__":
    main()
