"""Sites/s delivered as training batches: rxsweep's shard stream against a per-item PNG loader.

Both sides deliver the same sites as normalised, augmented float32 batches [B, 6, 512, 512]:

    baseline   a plain torch Dataset that opens each site's 6 PNGs with PIL per item (the
               DomainBed / Kaggle-kernel way), through a DataLoader with W worker processes;
               the batch is then normalised and augmented by the same BatchTransform.
    rxsweep    Ray Data reading the ingest's Parquet shards (uint8, decoded once), W read tasks,
               iter_torch_batches, then BatchTransform on the training device (CPU here).

Both run in this process on the same sites (the `small` synthetic preset at its native 512x512),
one after the other, each after a warm-up pass; the ratio is rxsweep / baseline. Data preparation
(generate + ingest, cached under bench/.cache) is not timed.

`uint8_sites_per_core_s` is what a GPU node asks of its CPUs: the streamed training path
(materialize: false; rxsweep.data.shard_stream, reading in the training process with W threads)
delivering uint8 batches, in sites per CPU-second this process spent (all its threads: reading,
decompressing, gathering batches), over every site of the preset's training split, at 512 and
at 256 (an ingest with --image-size 256, the WILDS resolution; cached too).

    python bench/data_throughput.py [--sites 480] [--batch-size 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from rxsweep.data.ingest import ingest
from rxsweep.data.prepare import prepare_synthetic
from rxsweep.data.shard_stream import ShardStream
from rxsweep.data.sites import load_sites
from rxsweep.data.splits import SplitSpec
from rxsweep.data.stream import batch_transform, open_shards, split_dataset, with_splits
from rxsweep.data.transforms import AugmentSpec

CACHE = Path(__file__).parent / ".cache"
AUGMENT = AugmentSpec(rotate90=True, flip=True, crop=None, intensity_jitter=0.1)


class PngSites(Dataset):
    """The baseline: PIL opens a site's channel PNGs on every access."""

    def __init__(self, paths: list[list[str]], experiment_ids: list[int], plate_ids: list[int]):
        self.paths, self.experiment_ids, self.plate_ids = paths, experiment_ids, plate_ids

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        image = np.stack([np.asarray(Image.open(p)) for p in self.paths[i]])
        return {"image": torch.from_numpy(image), "experiment_id": self.experiment_ids[i],
                "plate_id": self.plate_ids[i]}


def _time(batches, transform) -> tuple[float, int]:
    """Seconds and sites for one pass; transform=None times the uint8 batches alone."""
    start, n = time.perf_counter(), 0
    for batch in batches:
        x = batch["image"] if transform is None else transform(batch["image"], batch["experiment_id"],
                                                                 batch["plate_id"], train=True)
        n += x.shape[0]
    return time.perf_counter() - start, n


def per_core(index, threads: int, batch_size: int, passes: int = 2) -> dict:
    """The streamed training path over the training split of ``index``: uint8 sites per wall
    second and per CPU-second of this process, the best of ``passes`` epochs after a warm-up."""
    sites = index.table.index[index.table["split"] == "train"].to_numpy()
    stream = ShardStream(index, sites, buffer_bytes=1 << 30, threads=threads)
    best = None
    for epoch in range(passes + 1):
        wall, cpu, n = time.perf_counter(), time.process_time(), 0
        for batch in stream.batches(batch_size, seed=0, epoch=epoch):
            n += len(batch["image"])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if epoch and (best is None or n / cpu > best["per_core"]):
            best = {"per_core": n / cpu, "per_s": n / wall, "cores_busy": cpu / wall, "sites": n}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=480)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=args.workers + 1, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    shards = Path(prepare_synthetic(CACHE, preset="small", progress=False))
    index = with_splits(open_shards(shards), SplitSpec(n_val_per_cell_type=0, n_test_per_cell_type=0,
                                                       holdout_fraction=0.0))
    chosen = index.table.index[: args.sites]
    index.table.loc[index.table.index.difference(chosen), "split"] = "val"  # stream only `chosen`
    transform = batch_transform(index, "plate", AUGMENT, device="cpu", seed=0)

    sites = load_sites(index.manifest["input_root"]).set_index("site_id").loc[index.table.loc[chosen, "site_id"]]
    experiments = {e: i for i, e in enumerate(index.experiments)}
    plates = {p: i for i, p in enumerate(index.plates)}
    baseline_set = PngSites(list(sites["image_paths"]), [experiments[e] for e in sites["experiment"]],
                            [plates[(e, p)] for e, p in zip(sites["experiment"], sites["plate"])])
    loader = DataLoader(baseline_set, batch_size=args.batch_size, num_workers=args.workers,
                        persistent_workers=True)

    dataset = split_dataset(index, "train")

    def stream():
        return dataset.iter_torch_batches(batch_size=args.batch_size, prefetch_batches=2)

    _time(loader, transform)  # warm-up: worker start, page cache
    base_s, base_n = _time(loader, transform)
    _time(stream(), transform)
    ours_s, ours_n = _time(stream(), transform)
    assert base_n == ours_n == len(chosen), (base_n, ours_n, len(chosen))
    base_rate, ours_rate = base_n / base_s, ours_n / ours_s
    # The same without normalisation and augmentation: uint8 batches delivered (what a GPU, which
    # does the transform itself, asks of the CPU).
    base_u8_s, _ = _time(loader, None)
    ours_u8_s, _ = _time(stream(), None)
    base_u8, ours_u8 = base_n / base_u8_s, ours_n / ours_u8_s
    # The streamed training path, per core, at 512 and at 256 (the same sites ingested again).
    full = with_splits(open_shards(shards), SplitSpec(n_val_per_cell_type=0, n_test_per_cell_type=0,
                                                      holdout_fraction=0.0))
    at_512 = per_core(full, args.workers, args.batch_size)
    shards_256 = CACHE / "shards" / f"{shards.name}-256"
    ingest(index.manifest["input_root"], shards_256, image_size=256, progress=False)
    at_256 = per_core(with_splits(open_shards(shards_256), SplitSpec(n_val_per_cell_type=0, n_test_per_cell_type=0,
                                                                     holdout_fraction=0.0)),
                      args.workers, args.batch_size)
    print(json.dumps({
        "benchmark": "data_throughput", "sites": ours_n, "image": [6, index.image_size, index.image_size],
        "batch_size": args.batch_size, "workers": args.workers, "cpus": os.cpu_count(),
        "baseline_sites_per_s": round(base_rate, 1), "rxsweep_sites_per_s": round(ours_rate, 1),
        "ratio": round(ours_rate / base_rate, 2),
        "uint8_baseline_sites_per_s": round(base_u8, 1), "uint8_rxsweep_sites_per_s": round(ours_u8, 1),
        "uint8_ratio": round(ours_u8 / base_u8, 2),
        "uint8_sites_per_core_s": round(at_512["per_core"], 1), "uint8_stream_sites_per_s": round(at_512["per_s"], 1),
        "uint8_stream_cores_busy": round(at_512["cores_busy"], 2), "uint8_stream_sites": at_512["sites"],
        "uint8_stream_vs_png_loader": round(at_512["per_s"] / base_u8, 2),
        "uint8_sites_per_core_s_256": round(at_256["per_core"], 1),
        "uint8_stream_sites_per_s_256": round(at_256["per_s"], 1),
        "uint8_stream_cores_busy_256": round(at_256["cores_busy"], 2),
    }))
    ray.shutdown()


if __name__ == "__main__":
    main()
