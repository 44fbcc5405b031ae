"""The per-worker training loop: what every rank of a Ray Train worker group runs, and what a
single-worker sweep trial runs in its own process (worker_context.py says where and why).

Per epoch: train on this worker's shard of the training split, evaluate val / heldout_val /
heldout_test, all-reduce the sums, and report the metrics with a checkpoint (every rank reports;
rank 0 writes the checkpoint files). On start it resumes from the run's latest checkpoint at the
epoch after the checkpoint's.

Randomness: every epoch reseeds torch, NumPy, Python and the augmentation generator from
(seed, epoch, rank), and the data order from (seed, epoch, rank) too, so a resumed run replays the
same random streams as an uninterrupted one on every rank. The RNG state in the checkpoint is kept
as a record; resuming does not depend on it.
"""

from __future__ import annotations

import math
import random
import tempfile
import time

import numpy as np
import torch

from rxsweep.data.shard_stream import ShardStream
from rxsweep.data.stream import batch_transform
from rxsweep.data.weighted_batches import as_torch
from rxsweep.fileio import json_safe
from rxsweep.training import checkpointing as ckpt
from rxsweep.training import run_files
from rxsweep.training.recipe import (build_model, build_optimizer, build_scheduler, lambda_at,
                                          train_step)
from rxsweep.training.resampler import AdaptiveResampler
from rxsweep.training.config import ConfigError, TrainConfig
from rxsweep.training.embeddings import embeddings_table, write_embeddings
from rxsweep.training.evaluate import (all_gather_objects, all_reduce, broadcast_buffers, eval_metrics, evaluate,
                                       model_embedding_dim, model_n_classes)
from rxsweep.training.plan import EMBEDDING_SPLITS, EVAL_SPLITS, TRAIN_SPLIT, RunPlan
from rxsweep.training.worker_context import TrainWorkerContext


class FaultDrill(RuntimeError):
    """Raised on purpose by a run's fault drill (TrainConfig.fault_drill_epoch)."""


def derive_seed(*keys: int) -> int:
    """An independent 63-bit seed for a tuple of ints (seed, epoch, rank, stream)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> 1)


def seed_epoch(seed: int, epoch: int, rank: int, generators: dict[str, torch.Generator]) -> None:
    s = derive_seed(seed, epoch, rank, 0)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)
    for i, g in enumerate(generators.values(), start=1):
        g.manual_seed(derive_seed(seed, epoch, rank, i))


def loop_config(cfg: TrainConfig, plan: RunPlan, names: dict[str, list[str]], epoch_scores=None) -> dict:
    """The loop's ``config`` for a run of ``cfg``: ``names`` as build_datasets returns them."""
    return {"cfg": cfg.to_dict(), "plan": plan, "train_datasets": names[TRAIN_SPLIT],
            "eval_datasets": {s: names[s] for s in EVAL_SPLITS}, "epoch_scores": epoch_scores}


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point: :func:`run_worker_loop` on this rank of the worker group."""
    run_worker_loop(config, TrainWorkerContext())


def run_worker_loop(config: dict, ctx) -> None:
    """One worker's run. ``ctx``: a worker_context (rank, device, checkpoint, data, report).
    ``config``: {"cfg": TrainConfig.to_dict(), "plan": RunPlan,
    "train_datasets": [training dataset name of rank r, ...] (one name: one worker; none: the
    worker streams its training sites from the shards),
    "eval_datasets": {split: [dataset name of rank r, ...]}, "epoch_scores": None or a
    function of an epoch's held-out embeddings table returning extra metrics for its report}.

    Every epoch collects the held-out embeddings, writes them into its checkpoint and adds the
    epoch scores (the sweep's batch mixing) to its own report (rank 0's, which is what Ray Train's
    callbacks and Tune see): a scheduler may stop a trial after any epoch, and a stopped trial is
    ranked on what it reported last."""
    cfg = TrainConfig.from_dict(config["cfg"])
    plan: RunPlan = config["plan"]
    rank, world = ctx.rank, ctx.world
    device = ctx.device
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))

    torch.manual_seed(cfg.seed)  # same init on every rank (DDP also broadcasts rank 0's)
    model = build_model(cfg, plan)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, plan.total_steps)
    start_epoch, step, history = 1, 0, []
    resampler = AdaptiveResampler(cfg, plan, rank, world) if cfg.adaptive else None
    state = None
    with ctx.checkpoint_dir() as d:
        if d is not None:
            _check_resumable(cfg, d)
            state = ckpt.load_state(d)
            history = run_files.read_history(f"{d}/{run_files.HISTORY_FILE}")
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        if resampler is not None:
            resampler.load(state.get("resampling"))
    if state is not None and start_epoch > cfg.epochs and history:
        # Every epoch is trained and checkpointed, but the last one's report may never have
        # reached Tune (its driver failed, or the process was killed between checkpoint and
        # report): Tune would end the run as stopped early at the epoch it last heard of. Say the
        # last epoch again, as recorded (its metrics.jsonl line is rewritten identical); nothing
        # is trained again.
        ctx.report(history[-1], None, cfg.epochs)
        return
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    raw = model
    model = ctx.prepare_model(model)  # moves to the device; DDP when world > 1
    _move_optimizer_state(optimizer, device)

    transform = batch_transform(plan.index, cfg.normalization, cfg.augment_spec(), device, cfg.seed)
    generators = {"augment": transform.generator}
    domain_lut = torch.tensor(plan.domain_lut or [0], dtype=torch.long, device=device)
    class_weights = torch.tensor(plan.class_weights(), device=device) if cfg.class_balance else None
    domain_key = "plate_id" if cfg.domain_label == "plate" else "experiment_id"
    train_names = config["train_datasets"]
    if train_names:  # materialised in Ray's object store
        train_data = ctx.dataset(train_names)
    else:  # streamed from the shards by this process (shard_stream.py says why)
        train_data = ShardStream(plan.index, plan.train_sites(rank, world), cfg.stream_buffer_mb << 20,
                                 threads=max(1, int(cfg.cpus_per_worker)))
    eval_data = {s: ctx.dataset(names) for s, names in config["eval_datasets"].items()}
    n_types = len(plan.cell_types)

    for epoch in range(start_epoch, cfg.epochs + 1):
        seed_epoch(cfg.seed, epoch, rank, generators)
        model.train()
        sums = torch.zeros(7, dtype=torch.float64, device=device)
        mixing = torch.zeros(3, dtype=torch.float64)  # batches, distinct plates, distinct experiments
        trained_sites = []  # site_index of every row this worker trained on this epoch
        lam, taken = 0.0, 0
        started = time.perf_counter()
        draw = np.random.default_rng(derive_seed(cfg.seed, epoch, rank, 200))
        drawn_by_ar = resampler is not None and resampler.active  # with replacement, by the AR weights
        if isinstance(train_data, ShardStream):
            batches = as_torch(train_data.batches(cfg.batch_size, cfg.seed, epoch, rank,
                                                  counts=resampler.counts(draw) if drawn_by_ar else None))
        elif drawn_by_ar:
            batches = resampler.batches(train_data, cfg.batch_size, cfg.shuffle_buffer, draw)
        else:
            shuffle_seed = derive_seed(cfg.seed, epoch, rank, 100) % 2**32 if cfg.shuffle_buffer else None
            batches = train_data.iter_torch_batches(
                batch_size=cfg.batch_size, drop_last=True, prefetch_batches=2,
                local_shuffle_buffer_size=cfg.shuffle_buffer or None, local_shuffle_seed=shuffle_seed)
        for batch in batches:
            if taken == plan.steps_per_epoch:
                break
            lam = lambda_at(cfg, step, plan.total_steps)
            raw.set_lambda(lam)
            trained_sites.append(batch["site_index"].numpy())
            mixing += torch.tensor([1.0, batch["plate_id"].unique().numel(), batch["experiment_id"].unique().numel()],
                                   dtype=torch.float64)
            labels = batch["label"].to(device)
            x = transform(batch["image"], batch["experiment_id"], batch["plate_id"], train=True)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            domains = domain_lut[batch[domain_key].to(device)] if cfg.adversarial else None
            out = train_step(model, optimizer, scheduler, x, labels, domains, cfg, device,
                             is_treatment=batch["is_treatment"].to(device), class_weights=class_weights)
            if resampler is not None:
                resampler.collect(batch["site_index"], out.embedding)
            n = len(labels)
            sums += torch.stack([out.loss.double() * n, out.label_loss.double() * n,
                                 out.domain_loss.double() * out.domain_seen.double(), out.correct.double(),
                                 out.domain_correct.double(),
                                 torch.tensor(float(n), device=device, dtype=torch.float64),
                                 out.domain_seen.double()])
            step += 1
            taken += 1
        sums = all_reduce(sums)  # waits for this worker's last step too
        train_s = float(all_reduce(torch.tensor(time.perf_counter() - started), op="max"))
        if resampler is not None:  # what this epoch drew; the next epoch's weights
            ar_started = time.perf_counter()
            drawn = resampler.end_epoch(epoch)
            drawn["ar_time_s"] = float(all_reduce(torch.tensor(time.perf_counter() - ar_started), op="max"))

        eval_started = time.perf_counter()
        broadcast_buffers(raw)  # one model on every rank: the one rank 0 checkpoints
        heldout = cfg.heldout_eval == "every_epoch" or epoch == cfg.epochs
        evals = {s: evaluate(raw, it.iter_torch_batches(batch_size=cfg.batch_size, prefetch_batches=2),
                             transform, n_types, device, collect=s in EMBEDDING_SPLITS)
                 for s, it in eval_data.items() if heldout or s not in EMBEDDING_SPLITS}
        metrics = _epoch_metrics(cfg, plan, epoch, step, lam, sums, train_s, evals, optimizer)
        batches_seen, plates, experiments = all_reduce(mixing.to(device)).cpu().tolist()
        # How well a worker's batch mixes the domains (BatchNorm and the domain head see one batch)
        metrics["batch_plates"] = plates / max(batches_seen, 1)
        metrics["batch_experiments"] = experiments / max(batches_seen, 1)
        metrics.update(_site_coverage(all_gather_objects(np.unique(np.concatenate(trained_sites or [[]])))))
        if resampler is not None:
            metrics.update(drawn)
        metrics["eval_time_s"] = float(all_reduce(torch.tensor(time.perf_counter() - eval_started), op="max"))
        metrics["epoch_time_s"] = train_s + metrics["eval_time_s"]
        history.append(json_safe(metrics))
        parts = {s: all_gather_objects(evals[s].embeddings) for s in EMBEDDING_SPLITS if s in evals}

        with tempfile.TemporaryDirectory(prefix="rxsweep-ckpt-") as tmp:
            written = None
            if rank == 0 and parts:
                table = embeddings_table(parts, plan.index.table, model_embedding_dim(raw),
                                         model_n_classes(raw))
                write_embeddings(table, f"{tmp}/{run_files.EMBEDDINGS_FILE}")
                if config.get("epoch_scores"):  # e.g. batch mixing, for a sweep's objective
                    metrics.update(config["epoch_scores"](table))
                    history[-1] = json_safe(metrics)
            if rank == 0:
                ckpt.save_checkpoint(tmp, model=raw, optimizer=optimizer, scheduler=scheduler, epoch=epoch,
                                     step=step, rng=ckpt.rng_state(generators), config_yaml=cfg.to_yaml(),
                                     history=history, resampling=resampler and resampler.state())
                written = tmp
            ctx.report(metrics, written, epoch)
        # No rank goes on before every rank's report is queued: Ray Train counts a report (and
        # its checkpoint) once every rank's has reached the controller, and rank 0 queues its
        # only after uploading the checkpoint. A rank failing early in the next epoch would
        # otherwise lose this one (seen: a ResNet-50 upload outlasted the other rank's drill).
        all_reduce(torch.zeros(1, device=device))
        if epoch == cfg.fault_drill_epoch:  # every rank: none waits in a collective for another
            raise FaultDrill(f"fault drill after epoch {epoch} (fault_drill_epoch): the restart must resume "
                             f"at epoch {epoch + 1} from this epoch's checkpoint")



def _epoch_metrics(cfg, plan, epoch, step, lam, sums, train_s, evals, optimizer) -> dict:
    loss, label_loss, dom_loss, correct, dom_correct, n, dom_seen = sums.cpu().tolist()
    seen = cfg.adversarial and dom_seen > 0  # domain_sites: controls sees the control wells only
    metrics = {
        "epoch": epoch, "step": step,
        "train_loss": loss / n, "label_loss": label_loss / n,
        "domain_loss": dom_loss / dom_seen if seen else math.nan,
        "train_acc": correct / n, "domain_acc": dom_correct / dom_seen if seen else math.nan,
        "lambda": lam, "lr": optimizer.param_groups[0]["lr"],
    }
    for split in EVAL_SPLITS:
        if split in evals:  # the held-out splits: every epoch, or the last only (cfg.heldout_eval)
            metrics.update(eval_metrics(split, all_reduce(evals[split].sums), plan.cell_types))
    metrics["images_per_s"] = n / train_s if train_s > 0 else math.nan
    metrics["train_time_s"] = train_s
    return metrics


def _site_coverage(per_rank: list[np.ndarray]) -> dict:
    """From each worker's distinct trained sites of an epoch: how many sites the epoch trained on,
    and how many of them more than one worker did (0 unless the workers' parts overlap)."""
    every = np.concatenate(per_rank).astype(np.int64)
    distinct = np.unique(every)
    return {"train_sites_seen": int(len(distinct)), "train_sites_shared": int(len(every) - len(distinct))}


def _check_resumable(cfg: TrainConfig, directory: str) -> None:
    saved = TrainConfig.from_yaml(f"{directory}/{run_files.CONFIG_FILE}")
    changed = saved.unresumable_diff(cfg)
    if changed:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in changed.items()))
        raise ConfigError(f"the checkpoint to resume from was trained with another config ({detail}); "
                          "give this run another name or restore those values")


def _move_optimizer_state(optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for k, v in state.items():
            if torch.is_tensor(v) and k != "step":
                state[k] = v.to(device)
