"""`--smoke`'s derived space, without Ray: the covering rows, what shrinks and what is kept, the
resources for a cluster with and without GPUs. The smoke sweeps themselves: tests/test_smoke.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rxsweep.training.config import ConfigError, TrainConfig
from rxsweep.tuning.covering import covering_rows
from rxsweep.tuning.smoke import SMOKE_CAPS, method_rows, smoke_space
from rxsweep.tuning.space import SpaceError
from rxsweep.tuning.space_yaml import load_space, parse_space

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "search_spaces").glob("*.yaml"))
GPU_SPACE = REPO / "search_spaces" / "rxrx1_gpu.yaml"
CPU_ONLY = {"CPU": 2.0}
FEWEST_ROWS = {"default.yaml": 4, "rxrx1_gpu.yaml": 4, "jump_cpu.yaml": 4, "jump_gpu.yaml": 4}


def _active_everywhere(space, row: dict) -> bool:
    """Every key of the row is a parameter the sampler would draw under the row's other values."""
    values = {**space.base_config().to_dict(), **row}
    by_name = {p.name: p for p in space.params}
    return all(space.is_active(by_name[k], values, row) for k in row)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_covering_rows_hold_every_choice_value_in_valid_trials(path):
    space = load_space(path)
    rows, never = covering_rows(space)
    choices = [p for p in space.params if p.kind == "choice"]
    assert never == []
    for p in choices:
        assert {row[p.name] for row in rows if p.name in row} == set(p.values), p.name
    for row in rows:
        assert _active_everywhere(space, row), row
        space.trial_config(row)  # a valid TrainConfig
    # The fewest rows possible: default.yaml's 3 λ schedules need 3 rows with a domain head, and its
    # ERM value a 4th; rxrx1_gpu.yaml's 4 backbones need 4 rows (ERM and 3 ar_bins fit among them);
    # the jump spaces' 3 domains and 3 λ schedules need 3 rows with a domain head, ERM a 4th.
    assert len(rows) == FEWEST_ROWS[path.name] < math.prod(len(p.values) for p in choices) / 20


def test_start_rows_are_kept_and_completed_and_a_child_needs_its_parent():
    space = parse_space({
        "name": "t", "fixed": {"epochs": 3},
        "parameters": {"domain_label": {"choice": ["none", "plate"]}, "adversary": {"choice": ["dann", "cdann"]},
                       "resampling": {"choice": ["none", "adaptive"]}, "ar_bins": {"choice": [25, 50, 100]}}},
        Path("t.yaml"))
    rows, never = covering_rows(space, start=[{"domain_label": "none", "resampling": "none"}])
    assert rows[0] == {"domain_label": "none", "resampling": "none"}  # kept; no adversary without a domain
    assert all("adversary" not in r for r in rows if r["domain_label"] == "none")
    assert all(("ar_bins" in r) == (r["resampling"] == "adaptive") for r in rows)
    assert {r["ar_bins"] for r in rows if "ar_bins" in r} == {25, 50, 100}
    assert len(rows) == 4 and never == []  # the start row, then 3 adaptive rows for ar_bins' 3 values


def test_the_gpu_smoke_runs_every_verdict_arm_and_the_ddp_risk_on_two_cpu_workers():
    smoke = smoke_space(GPU_SPACE, CPU_ONLY, image_size=64)
    plain = [r for r in smoke.rows if r.get("resampling") == "none"]
    assert {r.get("adversary", "erm") for r in plain} == {"erm", "dann", "cdann"}  # ERM, DANN, CDANN arms
    assert any(r.get("resampling") == "adaptive" for r in smoke.rows)  # the AR arm
    assert any(r.get("domain_sites") == "controls" for r in smoke.rows)  # the DDP crash of issue 25
    assert all(r["ar_warmup_epochs"] == 1 for r in smoke.rows if r.get("resampling") == "adaptive")
    cfg = smoke.space.base_config()
    assert (cfg.num_workers, cfg.gpus_per_worker) == (2, 0.0)  # gloo on CPU, still DDP
    assert smoke.space.trial_resources()["CPU"] <= CPU_ONLY["CPU"]  # one trial fits the cluster
    assert (cfg.epochs, cfg.batch_size, cfg.crop, cfg.fault_drill_epoch) == (2, 8, 32, 1)
    assert cfg.stream_buffer_mb == SMOKE_CAPS["stream_buffer_mb"] and cfg.keep_checkpoints == 1
    original = load_space(GPU_SPACE).base_config()
    kept = {"materialize", "embedding_dim", "label_smoothing", "intensity_jitter", "n_val_per_cell_type",
            "n_test_per_cell_type"}
    assert {k: getattr(cfg, k) for k in kept} == {k: getattr(original, k) for k in kept}
    assert smoke.space.params == load_space(GPU_SPACE).params  # the same parameters and domains
    assert smoke.space.scheduler.grace_period == 1 and smoke.space.confirm_seeds == 1
    said = "\n".join(smoke.changes)
    for line in ("batch_size: 64 -> 8", "crop: 224 -> 32", "epochs: 60 -> 2", "resources.workers: 4 -> 2",
                 "resources.gpus_per_worker: 1 -> 0.0"):
        assert line in said


def test_on_gpus_the_smoke_keeps_the_gpu_workers_the_cluster_holds():
    cfg = smoke_space(GPU_SPACE, {"CPU": 64.0, "GPU": 8.0}, image_size=256).space.base_config()
    assert (cfg.num_workers, cfg.gpus_per_worker, cfg.cpus_per_worker) == (4, 1.0, 8.0)
    cfg = smoke_space(GPU_SPACE, {"CPU": 16.0, "GPU": 2.0}, image_size=256).space.base_config()
    assert (cfg.num_workers, cfg.gpus_per_worker) == (2, 1.0)


def test_a_small_image_caps_the_crop_and_a_crowded_cluster_is_refused():
    assert smoke_space(GPU_SPACE, CPU_ONLY, image_size=24).space.base_config().crop == 24
    with pytest.raises(SpaceError, match="fewer than 0.5 a worker"):
        smoke_space(GPU_SPACE, {"CPU": 1.0})


def test_method_rows_follow_what_the_space_searches(tmp_path):
    default = load_space(REPO / "search_spaces" / "default.yaml")
    assert method_rows(default) == [
        {"domain_label": "none", "resampling": "none"},
        {"domain_label": "plate", "adversary": "dann", "resampling": "none"},
        {"domain_label": "experiment", "adversary": "cdann", "resampling": "none"},
        {"resampling": "adaptive"}]
    numbers_only = tmp_path / "lr.yaml"
    numbers_only.write_text("name: t\nfixed: {epochs: 3}\nparameters: {lr: default}\n")
    assert method_rows(load_space(numbers_only)) == []
    assert smoke_space(numbers_only, CPU_ONLY).rows == [{}]  # no choice to cover: one trial, all drawn


def test_a_fault_drill_needs_an_epoch_after_it():
    assert TrainConfig(epochs=2, fault_drill_epoch=1).fault_drill_epoch == 1
    with pytest.raises(ConfigError, match="fault_drill_epoch=2 must be below epochs=2"):
        TrainConfig(epochs=2, fault_drill_epoch=2)
