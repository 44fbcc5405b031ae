"""Search spaces: validation before Ray starts, conditional sampling, seeded determinism. No Ray here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from rxsweep.tuning.space import SpaceError
from rxsweep.tuning.space_yaml import load_space, parse_space
from rxsweep.tuning.sweep import concurrent_trials

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "search_spaces").glob("*.yaml"))
DANN_ONLY = {"lambda_schedule", "lambda_max", "lambda_gamma", "lambda_warmup", "lambda_p0", "domain_width",
             "domain_depth", "domain_dropout", "domain_lr_mult", "env_label_smoothing"}

optuna.logging.set_verbosity(optuna.logging.WARNING)

VALID = """
name: t
objectives: [heldout_val_acc, mixing]
num_samples: 4
fixed: {epochs: 3, n_val_per_cell_type: 2}
parameters:
  domain_label: {choice: [none, plate, experiment]}
  lambda_schedule: {choice: [ganin, linear]}
  lambda_gamma: {uniform: [5.0, 15.0]}
  lr: {loguniform: [1.0e-4, 1.0e-2]}
  optimizer: {choice: [adamw, sgd]}
  momentum: default
  domain_depth: {int: [1, 3]}
"""


def draws(space, n: int, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=n))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.sample(trial))
        study.tell(trial, 0.0)
    return out


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_spaces_load_and_every_draw_is_a_valid_config(path):
    space = load_space(path)
    for sampled in draws(space, 40):
        cfg = space.trial_config(sampled)  # raises if any drawn value is illegal
        assert set(sampled) <= {p.name for p in space.params}


def test_conditional_parameters_are_drawn_only_under_their_condition(tmp_path):
    space = load_space(write(tmp_path, VALID))
    seen = draws(space, 200)
    for s in seen:
        dann = s["domain_label"] != "none"
        assert bool(DANN_ONLY & set(s)) == dann, s  # λ and domain-head settings only with a domain head
        assert ("lambda_gamma" in s) == (dann and s.get("lambda_schedule") == "ganin"), s
        assert ("momentum" in s) == (s["optimizer"] == "sgd"), s
        assert 1 <= s.get("domain_depth", 1) <= 3 and 1e-4 <= s["lr"] <= 1e-2
    kinds = {(s["domain_label"], "lambda_gamma" in s, "momentum" in s) for s in seen}
    assert len(kinds) >= 6  # every branch was reached, so the checks above tested something


def test_draws_are_seeded(tmp_path):
    space = load_space(write(tmp_path, VALID))
    assert draws(space, 12, seed=3) == draws(space, 12, seed=3)
    assert draws(space, 12, seed=3) != draws(space, 12, seed=4)


def test_default_domain_comes_from_the_declaration(tmp_path):
    space = load_space(write(tmp_path, VALID))
    momentum = next(p for p in space.params if p.name == "momentum")
    assert (momentum.kind, momentum.low, momentum.high) == ("uniform", 0.5, 0.99)  # TrainConfig's
    order = [p.name for p in space.params]
    assert order.index("domain_label") < order.index("lambda_schedule") < order.index("lambda_gamma")


BAD = [
    ("parameters:\n  lrr: {uniform: [0.1, 1.0]}", "parameters.lrr: is not a training config field (did you mean 'lr'?)"),
    ("parameters:\n  lr: {uniform: [0.1, 1.0]}\nsamples: 3", "samples: unknown key (did you mean 'num_samples'?)"),
    ("parameters:\n  lr: {uniform: [0.1, 0.01]}", "parameters.lr.uniform: low must be below high"),
    ("parameters:\n  backbone: {choice: []}", "parameters.backbone.choice: must be a non-empty list"),
    ("parameters:\n  lr: {loguniform: [0.0, 0.1]}", "parameters.lr.loguniform: a log scale needs low > 0"),
    ("parameters:\n  lr: {loguniform: [0.001, 0.1], when: {optimiser: sgd}}",
     "parameters.lr.when.optimiser: is a condition on a parameter that does not exist (did you mean 'optimizer'?)"),
    ("parameters:\n  lr: {uniform: [0.001, 0.1], when: {optimizer: [sgd]}}\n  optimizer: {choice: [adamw]}",
     "needs optimizer in ['sgd'], but optimizer is drawn from ['adamw']"),
    ("fixed: {domain_label: none}\nparameters:\n  lambda_max: {loguniform: [0.1, 1.0]}",
     "parameters.lambda_max: only matters when domain_label is one of ['experiment', 'plate', 'batch', 'source']"),
    ("parameters:\n  backbone: {choice: [resnet18, resnet9000]}", "backbone='resnet9000' is not one of"),
    ("parameters:\n  lr: {uniform: [0.001, 50.0]}", "lr=50.0 is out of range [0.0, 10.0]"),
    ("parameters:\n  domain_depth: {uniform: [1, 3]}", "domain_depth is an integer: use int"),
    ("parameters:\n  epochs: {int: [1, 3]}", "parameters.epochs: is a run setting, not a hyperparameter"),
    ("parameters:\n  lr: {uniform: [0.001, 0.1], choice: [0.01]}", "needs exactly one of"),
    ("objectives: [heldout_test_acc]\nparameters:\n  lr: default",
     "held-out test experiments are reported, never used to choose anything"),
    ("objectives: [{metric: heldout_val_acc, mode: min}]\nparameters:\n  lr: default", "mode must be 'max'"),
    ("objectives: [mixing]\nparameters:\n  lr: default", "list a per-epoch objective first"),
    ("fixed: {epochs: 2}\nscheduler: {grace_period: 3}\nparameters:\n  lr: default",
     "scheduler.grace_period: 3 is more than the 2 epochs"),
    ("fixed: {num_workers: 2}\nresources: {workers: 2}\nparameters:\n  lr: default",
     "fixed.num_workers: is set by resources.workers"),
    ("fixed: {lr: 0.1}\nparameters:\n  lr: default", "parameters.lr: is also under fixed"),
    ("start_with: [{lr: 5.0}]\nparameters:\n  lr: {loguniform: [0.001, 0.1]}", "start_with[0].lr: 5.0 is outside"),
    ("parameters: {}", "parameters: is empty"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m[:40] for _, m in BAD])
def test_invalid_spaces_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as caught:
        load_space(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_yaml_errors_and_missing_files_are_space_errors(tmp_path):
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(write(tmp_path, "parameters: {lr: [}"))
    with pytest.raises(SpaceError, match="search space file not found"):
        load_space(tmp_path / "nowhere.yaml")
    with pytest.raises(SpaceError, match="must be a mapping"):
        parse_space(["lr"], tmp_path / "x.yaml")


@pytest.mark.parametrize("text, key, lines", [
    ("name: t\nparameters:\n  lr: {loguniform: [0.001, 0.01]}\n  lr: {loguniform: [0.1, 1.0]}\n", "lr", (3, 4)),
    ("name: t\nfixed: {epochs: 3, epochs: 4}\nparameters: {lr: default}\n", "epochs", (2, 2)),
    ("num_samples: 4\nname: t\nnum_samples: 8\nparameters: {lr: default}\n", "num_samples", (1, 3)),
])
def test_a_duplicate_key_is_refused_naming_it_and_both_lines(tmp_path, text, key, lines):
    with pytest.raises(SpaceError, match=f"duplicate key '{key}': on line {lines[0]} and again on line {lines[1]}"):
        load_space(write(tmp_path, text))


def test_bad_space_fails_in_the_cli_before_ray_starts(tmp_path):
    """The console command exits 2 with one line, fast, and no Ray session was ever created."""
    path = write(tmp_path, "parameters:\n  lr: {uniform: [0.1, 0.01]}")
    probe = ("import sys, ray; from rxsweep.cli import main; code = main(sys.argv[1:]); "
             "print('ray started' if ray.is_initialized() else 'no ray'); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe, "sweep", "--space", str(path), "--data", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "low must be below high" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout.strip() == "no ray"


def test_a_single_worker_trial_reserves_its_worker_only_so_n_cpus_hold_n_trials(tmp_path):
    """A single-worker trial trains in its Tune trial's own process: it reserves its worker's CPU
    and nothing beside it, so a 2-CPU node runs two default trials at once and a 1-CPU node one;
    a multi-worker trial adds its driver's share to its workers'."""
    default = load_space(REPO / "search_spaces" / "default.yaml")
    assert default.trial_resources() == {"CPU": 1.0, "GPU": 0.0}
    assert [concurrent_trials({"CPU": n}, default.trial_resources(), 8) for n in (1, 2, 3)] == [1, 2, 3]
    gpu = load_space(REPO / "search_spaces" / "rxrx1_gpu.yaml")
    cfg = gpu.base_config()
    assert gpu.trial_resources()["CPU"] == gpu.driver_cpus + cfg.num_workers * cfg.cpus_per_worker > \
        cfg.num_workers * cfg.cpus_per_worker


def test_concurrency_follows_cluster_and_trial_resources():
    assert concurrent_trials({"CPU": 3.0}, {"CPU": 1.1, "GPU": 0}, 8) == 2
    assert concurrent_trials({"CPU": 64.0, "GPU": 8.0}, {"CPU": 32.5, "GPU": 4.0}, 48) == 1
    assert concurrent_trials({"CPU": 200.0, "GPU": 16.0}, {"CPU": 32.5, "GPU": 4.0}, 48) == 4
    assert concurrent_trials({"CPU": 16.0}, {"CPU": 1.1, "GPU": 0}, 3) == 3  # never more than trials
    with pytest.raises(ValueError, match="one trial needs"):
        concurrent_trials({"CPU": 16.0}, {"CPU": 1.1, "GPU": 1.0}, 3)


def test_the_study_records_a_trial_stopped_early_as_pruned_and_an_error_as_failed():
    """Every epoch reports both objectives, so a trial ASHA stopped has finite values; the study
    must still not count them as final (TPE would treat an epoch-1 score as a finished trial's)."""
    from rxsweep.tuning.searcher import make_searcher

    space = load_space(REPO / "tests" / "spaces" / "tiny.yaml")
    assert space.base_config().epochs == 2
    searcher = make_searcher(space, None)
    for trial_id in ("finished", "stopped", "failed", "unscored"):
        assert searcher.suggest(trial_id) is not None
    values = {"heldout_val_acc": 0.2, "mixing": 0.7}
    searcher.on_trial_complete("finished", {"epoch": 2, **values})
    searcher.on_trial_complete("stopped", {"epoch": 1, **values})
    searcher.on_trial_complete("failed", {"epoch": 1, **values}, error=True)
    searcher.on_trial_complete("unscored", {"epoch": 2, "heldout_val_acc": 0.2, "mixing": float("nan")})
    study = searcher._ot_study
    assert [(t.state, t.values) for t in study.trials] == [
        (optuna.trial.TrialState.COMPLETE, [0.2, 0.7]), (optuna.trial.TrialState.PRUNED, None),
        (optuna.trial.TrialState.FAIL, None), (optuna.trial.TrialState.PRUNED, None)]


def test_a_resumed_driver_does_not_enqueue_the_start_with_rows_again(tmp_path):
    """Each driver builds its searcher on the sweep's optuna.db; Optuna asks waiting trials first,
    so rows enqueued again by every resume would each be run again (bench/chaos.py: 26 waiting
    after 16 driver starts)."""
    from rxsweep.tuning.searcher import make_searcher

    space = load_space(REPO / "tests" / "spaces" / "tiny.yaml")
    db = tmp_path / "optuna.db"
    first = make_searcher(space, db)
    asked = [first.suggest(f"t{i}") for i in range(2)]  # two of the four rows started, then the driver died
    rows = [{k: a[k] for k in ("domain_label", "resampling")} for a in asked]
    assert rows == [dict(p) for p in space.start_with[:2]]
    again = make_searcher(space, db)  # the resumed driver's
    states = [t.state for t in again._ot_study.trials]
    assert states.count(optuna.trial.TrialState.WAITING) == len(space.start_with) - 2, states
    assert len(states) == len(space.start_with)
    fresh = make_searcher(space, tmp_path / "other.db")  # a new sweep still gets every row
    assert [t.state for t in fresh._ot_study.trials] == [optuna.trial.TrialState.WAITING] * len(space.start_with)


def test_the_gpu_study_searches_the_adversary_and_the_domain_sites_as_the_default_does():
    """The plate confound's two remedies (docs/concepts.md: domain_sites: controls, adversary:
    cdann) are choices of both shipped studies."""
    for name in ("default.yaml", "rxrx1_gpu.yaml"):
        params = {p.name: p for p in load_space(REPO / "search_spaces" / name).params}
        assert params["adversary"].values == ("dann", "cdann"), name
        assert params["domain_sites"].values == ("all", "controls"), name


def test_resume_compares_the_space_values_not_its_text(tmp_path):
    """A resumed sweep accepts its space file with new comments or layout, refuses a changed value
    naming it, and still resumes a sweep whose sweep.json recorded the text's hash (older rxsweep)."""
    from rxsweep.tuning.sweep import _claim, _write_sweep_file

    def space_in(folder: str, text: str):
        (tmp_path / folder).mkdir()
        return load_space(write(tmp_path / folder, text))

    first = space_in("a", VALID)
    sweep_dir = tmp_path / "sweep"
    identity = {"space_sha256": first.sha256, "data": "/shards"}
    _write_sweep_file(sweep_dir, first, identity, finished=False)
    relaid = space_in("b", "# a new comment\n" + VALID.replace("num_samples: 4", "num_samples:   4    # trials"))
    assert relaid.text != first.text and relaid.sha256 == first.sha256
    _claim(sweep_dir, {**identity, "space_sha256": relaid.sha256}, True, relaid)
    changed = space_in("c", VALID.replace("[1.0e-4, 1.0e-2]", "[1.0e-4, 1.0e-1]"))
    with pytest.raises(FileExistsError, match=r"other values in its space file \(parameters.lr.loguniform: "
                                              r"\[0.0001, 0.01\] -> \[0.0001, 0.1\]\)"):
        _claim(sweep_dir, {**identity, "space_sha256": changed.sha256}, True, changed)
    _write_sweep_file(sweep_dir, first, {**identity, "space_sha256": first.text_sha256}, finished=False)
    _claim(sweep_dir, identity, True, first)  # recorded by text, resumed with the same text
