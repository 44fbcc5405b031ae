"""What a sweep costs beyond the training it runs, and what running trials side by side buys.

    python bench/sweep_overhead.py [--trials 4] [--epochs 3] [--steps 24]

Fixed work: every trial trains cnn-small on the tiny synthetic set (64x64x6) for EPOCHS epochs of
STEPS steps, evaluates the training-domain holdout and the held-out experiments every epoch,
writes a checkpoint every epoch and the held-out embeddings and batch-mixing scores at the end.
Only the learning rate is searched (a log-uniform draw: it does not change the cost).

- bare: the same work, trial after trial, in this process: the same train_step, evaluate,
  checkpoint and end-of-run scores, on batches already in memory, one torch thread (what a
  1-CPU trial gets). The baseline is timed before and after the sweeps and averaged.
- sequential sweep: run_sweep with one trial at a time (Ray started beforehand, not timed).
- concurrent sweep: the same trials, two at a time (two 1-CPU trials on this 2-core machine).

Prints one JSON line: trial_efficiency = bare work a trial / sequential sweep time a trial
(target >= 0.85: a ratio, so it holds on any machine); overhead_s_per_trial = (sequential sweep -
trials x bare) / trials; concurrency_speedup = sequential / concurrent (target >= 1.6);
the concurrent sweep's longest idle trial slot (bench/slot_timeline.py), alone and over a trial's
bare work; and the raw times. The sequential sweep's time includes its one-off setup (datasets materialised once for
every trial, the Optuna study, the features baseline), spread over its trials; where it went, stage
by stage, is `sequential_stages_s` (see stages()).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

SPACE = """
name: {name}
objectives: [heldout_val_acc]
num_samples: {trials}
seed: 0
scheduler: {{type: fifo}}
resources: {{workers: 1, cpus_per_worker: 1}}
confirm: {{seeds: 0}}
fixed: {{epochs: {epochs}, batch_size: 32, max_steps_per_epoch: {steps}, embedding_dim: 64, domain_width: 128,
        n_val_per_cell_type: 2, n_test_per_cell_type: 1, domain_label: experiment, keep_checkpoints: 2}}
parameters:
  lr: {{loguniform: [1.0e-3, 1.0e-2]}}
"""


def bare_trials(space, data: str, n: int, workdir: Path) -> float:
    """Seconds for `n` trials' work run directly in this process (mean of the n)."""
    from rxsweep.metrics.embedding_scores import epoch_scores
    from rxsweep.data.stream import batch_transform
    from rxsweep.training import checkpointing as ckpt
    from rxsweep.training.recipe import build_model, build_optimizer, build_scheduler, lambda_at, train_step
    from rxsweep.training.trainer import build_datasets
    from rxsweep.training.embeddings import embeddings_table
    from rxsweep.training.evaluate import evaluate, model_embedding_dim, model_n_classes
    from rxsweep.training.plan import EMBEDDING_SPLITS, EVAL_SPLITS, TRAIN_SPLIT, preflight

    cfg = space.trial_config({"lr": 3e-3})
    plan = preflight(cfg, data)
    datasets, _ = build_datasets(cfg, plan)
    splits = {s: list(datasets[s].iter_torch_batches(batch_size=cfg.batch_size)) for s in (TRAIN_SPLIT, *EVAL_SPLITS)}
    train = splits[TRAIN_SPLIT][:plan.steps_per_epoch]
    device = torch.device("cpu")
    lut = torch.tensor(plan.domain_lut)
    started = time.perf_counter()
    for trial in range(n):
        torch.manual_seed(trial)
        model = build_model(cfg, plan)
        optimizer = build_optimizer(cfg, model)
        scheduler = build_scheduler(cfg, optimizer, plan.total_steps)
        transform = batch_transform(plan.index, cfg.normalization, cfg.augment_spec(), device, cfg.seed)
        step = 0
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            for batch in train:
                model.set_lambda(lambda_at(cfg, step, plan.total_steps))
                x = transform(batch["image"], batch["experiment_id"], batch["plate_id"], train=True)
                train_step(model, optimizer, scheduler, x, batch["label"], lut[batch["experiment_id"]], cfg, device,
                           is_treatment=batch["is_treatment"])
                step += 1
            # every epoch, as the training loop: held-out embeddings, their scores, a checkpoint
            evals = {s: evaluate(model, splits[s], transform, len(plan.cell_types), device,
                                 collect=s in EMBEDDING_SPLITS) for s in EVAL_SPLITS}
            folder = workdir / f"bare-{trial}-{epoch}"
            folder.mkdir()
            ckpt.save_checkpoint(folder, model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch,
                                 step=step, rng=ckpt.rng_state(), config_yaml=cfg.to_yaml(), history=[])
            parts = {s: [evals[s].embeddings] for s in EMBEDDING_SPLITS}
            epoch_scores(embeddings_table(parts, plan.index.table, model_embedding_dim(model), model_n_classes(model)))
    return (time.perf_counter() - started) / n


def timed_sweep(space_file: Path, data: str, storage: Path, name: str, concurrent: int) -> tuple[float, dict, float]:
    """The sweep's wall time, where it went (stages), and its longest idle trial slot in seconds
    (slot_timeline: fewer than `concurrent` trials busy while one waited to start)."""
    from slot_timeline import busy_intervals, longest_idle_slot

    from rxsweep.analysis.sweep_folder import load_sweep
    from rxsweep.tuning.sweep import run_sweep

    started, began = time.perf_counter(), time.time()
    sweep_dir = run_sweep(space_file, data, storage=storage, name=name, max_concurrent=concurrent, echo=False)
    wall, ended = time.perf_counter() - started, time.time()
    trials = load_sweep(sweep_dir).trials
    assert all(t.status == "completed" for t in trials), [(t.trial_id, t.status, t.error) for t in trials]
    return wall, stages(trials, began, ended), longest_idle_slot(busy_intervals(sweep_dir), concurrent)


def stages(trials, began: float, ended: float) -> dict:
    """Where a sequential sweep's time went, in seconds, read off its folder: `setup` (sweep start
    to the first trial's start: Ray Data's shared datasets, the Optuna study, the features
    baseline); per trial, means: `trial_start` (Tune starting the trial to its process running
    the trial function), `epochs` (the epochs' own training and evaluation), `in_trial_rest` (the
    rest of the trial: model and loop set-up, checkpoints, embeddings, mixing scores, reports),
    `between` (one trial's end to the next one's start); `finish` (the last trial's end to the
    sweep's return: ranking and report)."""
    from rxsweep import fileio
    from rxsweep.tuning import sweep_files

    rows = []
    for t in trials:
        status = fileio.read_json(t.path / sweep_files.STATUS_FILE)
        process = fileio.read_jsonl(t.path / sweep_files.PROCESSES_FILE)[0]["time"]
        rows.append((status["started_at"], process, sum(m["epoch_time_s"] for m in t.history), status["ended_at"]))
    rows.sort()
    mean = lambda xs: round(sum(xs) / max(len(xs), 1), 2)  # noqa: E731
    return {"setup": round(rows[0][0] - began, 2), "trial_start": mean([p - s for s, p, _, _ in rows]),
            "epochs": mean([w for _, _, w, _ in rows]), "in_trial_rest": mean([e - p - w for _, p, w, e in rows]),
            "between": mean([b[0] - a[3] for a, b in zip(rows, rows[1:])]), "finish": round(ended - rows[-1][3], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=24, help="training steps an epoch")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import ray

    from rxsweep.cluster import init_ray
    from rxsweep.data.prepare import prepare_synthetic
    from rxsweep.tuning.space_yaml import load_space

    cache = Path(__file__).parent / ".cache"
    data = str(prepare_synthetic(cache, preset="tiny", progress=False))
    with tempfile.TemporaryDirectory(prefix="rxsweep-bench-") as tmp:
        tmp = Path(tmp)
        space_file = tmp / "space.yaml"
        space_file.write_text(SPACE.format(name="overhead", trials=args.trials, epochs=args.epochs, steps=args.steps))
        space = load_space(space_file)
        ray_started = time.perf_counter()
        init_ray()
        ray_start_s = time.perf_counter() - ray_started
        before = bare_trials(space, data, args.trials, tmp)
        sequential, seq_stages, _ = timed_sweep(space_file, data, tmp / "runs", "sequential", 1)
        concurrent, _, idle = timed_sweep(space_file, data, tmp / "runs", "concurrent", 2)
        after = bare_trials(space, data, args.trials, tmp / "runs")
        ray.shutdown()
    bare = (before + after) / 2
    overhead = (sequential - args.trials * bare) / args.trials
    print(json.dumps({
        "bench": "sweep_overhead", "trials": args.trials, "epochs": args.epochs, "steps_per_epoch": args.steps,
        "trial_efficiency": round(bare * args.trials / sequential, 3),
        "overhead_s_per_trial": round(overhead, 2), "concurrency_speedup": round(sequential / concurrent, 3),
        "targets": {"trial_efficiency": 0.85, "concurrency_speedup": 1.6},
        "sweep_sequential_s": round(sequential, 1), "sweep_concurrent_s": round(concurrent, 1),
        "bare_s_per_trial": round(bare, 2), "bare_runs_s": [round(before, 2), round(after, 2)],
        "sequential_stages_s": seq_stages,
        # a slot idle while a trial waits: Tune starting the next trial's process (a leaked
        # placement group would make it 60 s); relative to a trial's bare work
        "concurrent_longest_idle_slot_s": round(idle, 2), "idle_slot_per_trial_work": round(idle / bare, 3),
        "ray_start_s": round(ray_start_s, 1), "cpus": os.cpu_count(),
    }), flush=True)


if __name__ == "__main__":
    main()
