"""`--smoke` as a user runs it (a subprocess with its own local Ray): the shipped spaces pass it,
the GPU space on two CPU workers (gloo DDP), and a space whose runs cannot survive a failure
fails it, naming why. The derived space itself: tests/test_smoke_space.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rxsweep import fileio
from rxsweep.analysis.sweep_folder import load_sweep
from rxsweep.training.placement_groups import read_ledger
from rxsweep.tuning import sweep_files
from rxsweep.tuning.space_yaml import load_space

pytestmark = pytest.mark.sweep

REPO = Path(__file__).resolve().parents[1]
SPACES = REPO / "search_spaces"


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    """One storage for the module: the first smoke generates the tiny shards, the others reuse them."""
    return tmp_path_factory.mktemp("smoke-storage")


def smoke(storage: Path, *args: str, entry: str = "cli") -> tuple[int, str, Path]:
    """(exit code, stdout, sweep folder) of a smoke run."""
    command = ([sys.executable, str(REPO / "jobs" / "sweep.py")] if entry == "job"
               else [sys.executable, "-m", "rxsweep.cli", "sweep"])
    done = subprocess.run([*command, "--smoke", "--storage", str(storage), *args], capture_output=True,
                          text=True, timeout=1500)
    out = done.stdout
    return done.returncode, out + done.stderr[-4000:], Path(out.strip().splitlines()[-1])


def check_passed(code: int, out: str, sweep_dir: Path, space_file: Path) -> None:
    """Exit 0, every row ok, every value of every choice in a run that ran, every run past the
    drill resumed once, and a verdict with every arm of the space."""
    assert code == 0, out[-6000:]
    assert "FAILED" not in out and "smoke: " in out, out[-6000:]
    sweep = load_sweep(sweep_dir)
    assert sweep.finished
    for p in load_space(space_file).params:
        if p.kind == "choice":
            ran = {t.params.get(p.name) for t in sweep.trials if t.status in ("completed", "stopped")}
            assert set(p.values) <= ran, (p.name, ran)
    for run in sweep.trials + sweep.confirm:
        epochs = [m["epoch"] for m in run.history]
        assert epochs in ([1], [1, 2]), (run.trial_id, epochs)
        if epochs == [1, 2]:  # raised after epoch 1, restarted, resumed at epoch 2 from its checkpoint
            assert starts(run.path) == 2, run.trial_id
    arms = {arm["method"] for arm in fileio.read_json(sweep_dir / sweep_files.VERDICT_FILE)["arms"]}
    assert {"erm", "dann", "cdann", "ar", "features"} <= arms


def starts(run_dir: Path) -> int:
    return len(fileio.read_jsonl(run_dir / sweep_files.PROCESSES_FILE)) or len(read_ledger(run_dir))


def test_the_default_space_passes_its_smoke_through_the_job_entry_point(storage):
    code, out, sweep_dir = smoke(storage, entry="job")
    check_passed(code, out, sweep_dir, SPACES / "default.yaml")
    assert sweep_dir == storage / "smoke" / "default-smoke-1"
    assert "crop: None -> 32" in out and "epochs: 8 -> 2" in out  # what shrank, said first


def test_the_gpu_space_passes_its_smoke_on_two_cpu_workers(storage):
    code, out, sweep_dir = smoke(storage, "--space", str(SPACES / "rxrx1_gpu.yaml"))
    check_passed(code, out, sweep_dir, SPACES / "rxrx1_gpu.yaml")
    assert "resources.workers: 4 -> 2" in out
    sweep = load_sweep(sweep_dir)
    for run in sweep.trials + sweep.confirm:  # DDP over gloo: a TorchTrainer of 2 workers each
        assert (run.config["num_workers"], run.config["gpus_per_worker"]) == (2, 0.0)
        assert read_ledger(run.path), run.trial_id
    assert {t.params["backbone"] for t in sweep.trials} == {"resnet50", "densenet121", "efficientnet_b0", "vit_small"}


def test_a_space_whose_runs_cannot_restart_fails_its_smoke_and_says_why(storage, tmp_path):
    space = tmp_path / "no_restart.yaml"
    space.write_text("name: no_restart\nobjectives: [heldout_val_acc]\nnum_samples: 4\n"
                     "resources: {workers: 1, cpus_per_worker: 1}\nfailures: {worker_restarts: 0, trial_retries: 0}\n"
                     "confirm: {seeds: 0}\nfixed: {n_val_per_cell_type: 2, n_test_per_cell_type: 2}\n"
                     "parameters: {lr: {loguniform: [1.0e-3, 1.0e-2]}}\n")
    code, out, sweep_dir = smoke(storage, "--space", str(space))
    assert code == 1, out[-6000:]
    failed = [line for line in out.splitlines() if line.startswith("FAILED") or "->" in line]
    assert any("FaultDrill" in line and "allow a restart" in line for line in failed), out[-6000:]
    (trial,) = load_sweep(sweep_dir).trials
    assert trial.status == "error" and [m["epoch"] for m in trial.history] == [1]
