"""A 2-worker DDP run (gloo, CPU) through Ray Train, as a multi-worker trial runs it: the workers
train on disjoint parts of the training split that together are the split, the held-out metrics it
reports are those of the checkpoint it saves (scored again here, in this process, without Ray
Train), and its checkpoint resumes on 2 workers and on 1.

One local Ray and one tiny synthetic shard set (test_training's fixture) for the module."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from rxsweep.training import checkpointing as ckpt
from rxsweep.training import run_files
from rxsweep.training.config import TrainConfig
from rxsweep.training.run_files import METRICS_FILE, read_history
from rxsweep.training.runner import train
from test_training import SPLIT, _kill_after_first_checkpoint, shards  # noqa: F401 (a fixture: on this module's Ray)

pytestmark = pytest.mark.sweep

# batch 16 divides neither worker's part: each worker drops its last partial batch
DDP = {**SPLIT, "num_workers": 2, "epochs": 2, "batch_size": 16, "embedding_dim": 64, "domain_width": 128,
       "domain_label": "experiment"}
SCORED = ("heldout_val", "heldout_test", "val")


@pytest.fixture(scope="module")
def ray_session():
    """rxsweep's own local Ray (with its dashboard: Ray Train's cleaner asks its State API whether
    a finished trial's controller lives before it frees the trial's worker group)."""
    import ray

    from rxsweep.cluster import init_ray

    init_ray(num_cpus=3)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def killed_ddp_run(shards, tmp_path_factory, ray_session) -> Path:
    """The 2-worker run, its driver SIGKILLed after epoch 1's checkpoint."""
    out = tmp_path_factory.mktemp("ddp") / "killed"
    _kill_after_first_checkpoint(shards, out, DDP, ray_session)
    return out


def rescore(run_dir: Path, shards: Path, epoch: int) -> dict:
    """The metrics of epoch `epoch`'s checkpoint on SCORED, from one process reading whole splits."""
    from rxsweep.data.stream import batch_transform, split_dataset
    from rxsweep.training.evaluate import eval_metrics, evaluate
    from rxsweep.training.plan import preflight
    from rxsweep.training.recipe import build_model

    cfg = TrainConfig.from_yaml(run_dir / run_files.CONFIG_FILE)
    plan = preflight(cfg, shards)
    model = build_model(cfg, plan)
    model.load_state_dict(ckpt.load_state(run_dir / run_files.checkpoint_dir_name(epoch))["model"])
    cpu = torch.device("cpu")
    transform = batch_transform(plan.index, cfg.normalization, cfg.augment_spec(), cpu, cfg.seed)
    scores = {}
    for split in SCORED:
        batches = split_dataset(plan.index, split).iter_torch_batches(batch_size=64)
        scores.update(eval_metrics(split, evaluate(model, batches, transform, len(plan.cell_types), cpu).sums,
                                   plan.cell_types))
    return scores


def resume_on(workers: int, killed: Path, shards: Path, out: Path) -> list[dict]:
    """A copy of the killed run resumed on `workers` workers; its metrics.jsonl."""
    shutil.copytree(killed, out)
    train(shards, out, overrides={**DDP, "num_workers": workers}, echo=False)
    return read_history(out / METRICS_FILE)


@pytest.fixture(scope="module")
def resumed_on_two(killed_ddp_run, shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "two"
    resume_on(2, killed_ddp_run, shards, out)
    return out


def trained_sites(shards: Path, workers: int) -> int:
    """Sites an epoch trains on: every worker takes the same number of full batches, from its part."""
    from rxsweep.training.plan import preflight

    plan = preflight(TrainConfig.from_dict({**DDP, "num_workers": workers}), shards)
    return workers * plan.steps_per_epoch * DDP["batch_size"]


def test_the_workers_train_on_disjoint_parts_that_make_up_the_split(resumed_on_two, killed_ddp_run, shards):
    from rxsweep.training.plan import preflight

    split = len(preflight(TrainConfig.from_dict(DDP), shards).train_sites())
    history = read_history(resumed_on_two / METRICS_FILE)
    assert [m["epoch"] for m in history] == [1, 2]
    assert history[0] == read_history(killed_ddp_run / METRICS_FILE)[0]  # resumed at epoch 2
    for m in history:
        assert m["train_sites_shared"] == 0  # no site trained on by both workers
        assert m["train_sites_seen"] == trained_sites(shards, 2)
    assert trained_sites(shards, 2) > split - 2 * DDP["batch_size"]  # all but the partial batches


def test_reported_held_out_metrics_are_those_of_the_saved_checkpoint(resumed_on_two, shards):
    """Each rank scores its own part of a split; the reported figures are the all-reduced sums. They
    must be the checkpoint's own: one model, rank 0's BatchNorm statistics, on every rank."""
    history = read_history(resumed_on_two / METRICS_FILE)
    for epoch in (1, 2):
        reported, again = history[epoch - 1], rescore(resumed_on_two, shards, epoch)
        for split in SCORED:
            assert reported[f"{split}_acc"] == again[f"{split}_acc"], (split, epoch)
            assert reported[f"{split}_acc_all"] == again[f"{split}_acc_all"], (split, epoch)
            assert reported[f"{split}_loss"] == pytest.approx(again[f"{split}_loss"], rel=1e-5), (split, epoch)


def test_the_checkpoint_resumes_on_one_worker(killed_ddp_run, shards, tmp_path):
    history = resume_on(1, killed_ddp_run, shards, tmp_path / "one")
    assert [m["epoch"] for m in history] == [1, 2]
    assert history[0] == read_history(killed_ddp_run / METRICS_FILE)[0]  # epoch 1 from the checkpoint
    # the one worker's part is the whole split
    assert history[1]["train_sites_seen"] == trained_sites(shards, 1)
    assert history[1]["train_sites_shared"] == 0


def test_a_sweep_of_two_worker_trials_runs_them_through_ray_train(shards, ray_session, tmp_path):
    """Multi-worker trials run a TorchTrainer each under Tune (single-worker ones train in the
    trial's process): every trial reports each epoch once, its workers' parts are disjoint, its
    worker groups are recorded, and none is left reserved when the sweep ends."""
    from test_sweep import SPACES
    from timeline import first_groups_the_guard_released

    from rxsweep.analysis.sweep_folder import load_sweep
    from rxsweep.training.placement_groups import read_ledger
    from rxsweep.tuning.sweep import run_sweep

    sweep_dir = run_sweep(SPACES / "two_workers.yaml", shards, storage=tmp_path, echo=False)
    sweep = load_sweep(sweep_dir)
    assert sweep.finished and len(sweep.trials) == 3 and not sweep.lost
    assert {t.status for t in sweep.trials} <= {"completed", "stopped"}
    for trial in sweep.trials:
        assert [m["epoch"] for m in trial.history] == list(range(1, len(trial.history) + 1))
        assert all(m["train_sites_shared"] == 0 for m in trial.history)
        assert read_ledger(trial.path)  # its Train run's worker group, recorded
    assert first_groups_the_guard_released(sweep_dir) == []
    reserved = [g for g in ray_session.util.placement_group_table().values() if g["state"] == "CREATED"]
    assert reserved == []
