"""GPU training throughput: ResNet-50 at 256x256x6, bf16, channels_last, one GPU, fed by rxsweep's
own stream against the same model fed by a batch that already sits on the GPU.

rxsweep   the real per-worker loop (rxsweep.training.loop.run_worker_loop, what a single-worker
          trial runs in its own process) over the `small` preset ingested at 256 px, streamed
          from the shards (`materialize: false`: reader threads, the shuffle pool, the uint8 copy
          to the GPU, normalisation and augmentation on the GPU), STEPS steps; images/s is the
          loop's own `images_per_s` (training only, evaluation excluded).
baseline  the same model, optimiser and train_step on one fixed batch already on the GPU (already
          normalised), STEPS steps: what the GPU does when the data costs nothing.

ratio = rxsweep / baseline (target >= 0.9): how much of the GPU the data path leaves unused.

On a GPU machine whose Python has torch but not Ray or Optuna, one command:

    python3 bench/gpu_throughput.py --wheels .whl [--steps 200] [--batch-size 128]

`--wheels DIR` installs the wheels in DIR (Ray slimmed below 64 MiB, Optuna and what they need;
`bench/pack_wheels.sh DIR` downloads and packs them on a machine with pip access) into a
folder of its own before importing anything else. Without `--data` the `small` preset is
generated and ingested at 256 px under bench/.cache first (not timed; ~2 min on 16 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(__file__).parent / ".cache"


def install_wheels(folder: str) -> None:
    """pip-install every wheel in `folder` into a private site folder and put it on sys.path."""
    target = Path(tempfile.gettempdir()) / "rxsweep-bench-site"
    wheels = sorted(str(p) for p in Path(folder).glob("*.whl"))
    if not wheels:
        raise SystemExit(f"--wheels {folder}: no .whl files there (bench/pack_wheels.sh {folder} makes them)")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--upgrade", "--target", str(target), *wheels], check=True)
    platform = str(Path(__file__).resolve().parents[1] / "platform")  # rxsweep, not installed
    sys.path[:0] = [platform, str(target)]
    # Ray's workers (the ingest's tasks) import rxsweep and the wheels too: they inherit PYTHONPATH.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [platform, str(target), os.environ.get("PYTHONPATH")]))


def shards_at_256(data: str | None) -> str:
    from rxsweep.data.ingest import ingest
    from rxsweep.data.prepare import prepare_synthetic

    if data:
        return data
    full = Path(prepare_synthetic(CACHE, preset="small", progress=False))
    small = CACHE / "shards" / f"{full.name}-256"
    from rxsweep.data.stream import open_shards

    ingest(open_shards(full).manifest["input_root"], small, image_size=256, progress=False)
    return str(small)


def bench_config(args, data: str):
    """ERM (no domain head: the baseline's model) on one worker, streamed; as many epochs as STEPS
    take (each epoch is one pass over the training split)."""
    from rxsweep.training.config import TrainConfig
    from rxsweep.training.plan import preflight

    values = {"backbone": args.backbone, "domain_label": "none", "batch_size": args.batch_size,
              "materialize": False, "cpus_per_worker": args.reader_threads, "n_val_per_cell_type": 1,
              "n_test_per_cell_type": 1, "keep_checkpoints": 1}
    per_epoch = preflight(TrainConfig.from_dict({**values, "epochs": 1}), data).steps_per_epoch
    epochs = -(-args.steps // per_epoch)
    return TrainConfig.from_dict({**values, "epochs": epochs, "max_steps_per_epoch": -(-args.steps // epochs)})


def rxsweep_images_per_s(cfg, data: str, device, workdir: Path) -> float:
    """Images over seconds of the loop's training phases (its own figures; evaluation excluded)."""
    from rxsweep.training.loop import loop_config, run_worker_loop
    from rxsweep.training.plan import preflight
    from rxsweep.training.trainer import build_datasets
    from rxsweep.training.worker_context import InProcessContext

    plan = preflight(cfg, data)
    datasets, names = build_datasets(cfg, plan)
    reported = []
    context = InProcessContext(workdir, datasets, keep_checkpoints=1, report=reported.append, device=device)
    run_worker_loop(loop_config(cfg, plan, names), context)
    images = len(reported) * plan.steps_per_epoch * cfg.batch_size
    return images / sum(m["train_time_s"] for m in reported)


def baseline_images_per_s(cfg, data: str, device) -> float:
    import torch

    from rxsweep.training.plan import preflight
    from rxsweep.training.recipe import build_model, build_optimizer, build_scheduler, train_step

    plan = preflight(cfg, data)
    torch.manual_seed(0)
    model = build_model(cfg, plan).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, plan.total_steps)
    size = cfg.crop or plan.input_size
    x = torch.randn(cfg.batch_size, plan.in_channels, size, size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, plan.n_classes, (cfg.batch_size,), device=device)
    treated = torch.ones(cfg.batch_size, dtype=torch.long, device=device)
    model.train()
    started = time.perf_counter()
    for _ in range(plan.total_steps):
        train_step(model, optimizer, scheduler, x, labels, None, cfg, device, is_treatment=treated)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return plan.total_steps * cfg.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", default=None, help="folder of wheels to install first (Ray, Optuna...)")
    parser.add_argument("--data", default=None, help="shard folder (default: the small preset at 256 px)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--reader-threads", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run of this script")
    args = parser.parse_args()
    if args.wheels:
        install_wheels(args.wheels)

    import ray
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark measures a GPU (--device cpu only checks the script)")
    device = torch.device(args.device, 0) if args.device == "cuda" else torch.device("cpu")
    # Before the ingest: rxsweep's own start asks for a dashboard, whose packages (aiohttp, ...)
    # the wheels leave out; an initialised Ray is joined as it is.
    ray.init(num_cpus=os.cpu_count(), log_to_driver=False, include_dashboard=False)
    data = shards_at_256(args.data)
    cfg = bench_config(args, data)
    try:
        baseline = baseline_images_per_s(cfg, data, device)
        with tempfile.TemporaryDirectory(prefix="rxsweep-gpu-bench-") as tmp:
            rxsweep = rxsweep_images_per_s(cfg, data, device, Path(tmp))
        baseline_after = baseline_images_per_s(cfg, data, device)
    finally:
        ray.shutdown()
    base = (baseline + baseline_after) / 2
    print(json.dumps({
        "bench": "gpu_throughput", "ratio": round(rxsweep / base, 3), "target": 0.9,
        "rxsweep_images_per_s": round(rxsweep, 1), "baseline_images_per_s": round(base, 1),
        "baseline_runs": [round(baseline, 1), round(baseline_after, 1)], "steps": cfg.epochs * cfg.max_steps_per_epoch,
        "batch_size": cfg.batch_size, "backbone": cfg.backbone, "reader_threads": args.reader_threads,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", "cpus": os.cpu_count(),
    }), flush=True)


if __name__ == "__main__":
    main()
