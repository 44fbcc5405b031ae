"""Training throughput through one Ray Train worker vs a bare PyTorch loop, same model and batches.

    python bench/train_throughput.py [--data SHARDS] [--backbones cnn-small,resnet18] [--threads 1]

Both sides run the same training step (rxsweep.training.recipe.train_step: DANN, domain head,
device-side normalisation and augmentation) on the same model, batch size and torch thread count,
over the same training split:

- bare: this process iterates a list of uint8 batches already in memory (pass 1 warms up, pass 2
  is timed) — the upper bound, with no data loading at all;
- ray: one TorchTrainer worker running rxsweep's real per-worker loop for 2 epochs, streaming the
  split from Ray's object store; its own `images_per_s` of epoch 2 (training part of the epoch:
  batch fetch + transform + step) is the rate.

The bare loop is timed before and after the Ray run and averaged, because this machine is shared.
Prints one JSON line: per backbone rates and ratio (ray / bare), and `ratio` = the lowest.
Without --data, the tiny synthetic RxRx1 (64x64x6) is generated and ingested into a temp folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

SPLIT = {"val_experiments": ["HUVEC-02"], "test_experiments": ["HEPG2-01"]}  # tiny Kaggle layout


def make_shards(workdir: Path) -> Path:
    from rxsweep.data.ingest import ingest
    from rxsweep.data.synth import generate

    root = generate(workdir / "raw", layout="kaggle", preset="tiny", seed=0)
    ingest(root, workdir / "shards", progress=False)
    return workdir / "shards"


def bare_rate(cfg, plan, batches: list[dict]) -> float:
    """Images/s of the training step over in-memory batches (second pass; the first warms up)."""
    from rxsweep.data.stream import batch_transform
    from rxsweep.training.recipe import (build_model, build_optimizer, build_scheduler,
                                              lambda_at, train_step)

    device = torch.device("cpu")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, plan)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, 2 * len(batches))
    transform = batch_transform(plan.index, cfg.normalization, cfg.augment_spec(), device, cfg.seed)
    lut = torch.tensor(plan.domain_lut)
    model.train()
    step = 0
    for timed in (False, True):
        started, images = time.perf_counter(), 0
        for batch in batches:
            model.set_lambda(lambda_at(cfg, step, 2 * len(batches)))
            x = transform(batch["image"], batch["experiment_id"], batch["plate_id"], train=True)
            train_step(model, optimizer, scheduler, x, batch["label"], lut[batch["experiment_id"]], cfg, device)
            images += len(batch["label"])
            step += 1
        elapsed = time.perf_counter() - started
    return images / elapsed


def ray_rate(cfg, plan, shards: Path, workdir: Path, name: str) -> tuple[float, dict]:
    from rxsweep.training.run_files import METRICS_FILE
    from rxsweep.training.trainer import build_trainer
    from rxsweep.training.run_files import read_history

    started = time.perf_counter()
    build_trainer(cfg, shards, workdir, name, plan=plan).fit()
    rows = read_history(workdir / name / METRICS_FILE)
    return rows[-1]["images_per_s"], {"run_s": round(time.perf_counter() - started, 1),
                                      "epoch_train_s": [round(r["train_time_s"], 2) for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="ingested shards (default: tiny synthetic, generated)")
    parser.add_argument("--backbones", default="cnn-small,resnet18")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads = the worker's CPUs")
    args = parser.parse_args()

    import ray
    from ray.data import DataContext

    from rxsweep.training.config import TrainConfig
    from rxsweep.training.trainer import build_datasets
    from rxsweep.training.plan import TRAIN_SPLIT, preflight

    torch.set_num_threads(args.threads)
    ray.init(num_cpus=args.threads + 2, log_to_driver=False, include_dashboard=False)
    DataContext.get_current().enable_progress_bars = False
    results = []
    with tempfile.TemporaryDirectory(prefix="rxsweep-bench-") as tmp:
        workdir = Path(tmp)
        shards = args.data or make_shards(workdir)
        for backbone in args.backbones.split(","):
            cfg = TrainConfig.from_dict({**SPLIT, "backbone": backbone, "batch_size": args.batch_size,
                                         "epochs": 2, "cpus_per_worker": float(args.threads)})
            plan = preflight(cfg, shards)
            datasets, _ = build_datasets(cfg, plan)
            batches = list(datasets[TRAIN_SPLIT].iter_torch_batches(batch_size=cfg.batch_size, drop_last=True))
            batches = batches[:plan.steps_per_epoch]
            before = bare_rate(cfg, plan, batches)
            ray_ips, detail = ray_rate(cfg, plan, shards, workdir, f"bench-{backbone}")
            after = bare_rate(cfg, plan, batches)
            bare = (before + after) / 2
            results.append({"backbone": backbone, "image_size": plan.input_size, "channels": plan.in_channels,
                            "batch_size": cfg.batch_size, "steps": len(batches), "threads": args.threads,
                            "bare_images_per_s": round(bare, 1), "bare_runs": [round(before, 1), round(after, 1)],
                            "ray_images_per_s": round(ray_ips, 1), "ratio": round(ray_ips / bare, 3), **detail})
    ray.shutdown()
    print(json.dumps({"bench": "train_throughput", "device": "cpu", "target_ratio": 0.9,
                      "ratio": min(r["ratio"] for r in results), "results": results,
                      "gpu": "not measured (no GPU in this session)"}), flush=True)


if __name__ == "__main__":
    main()
