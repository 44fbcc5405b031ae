"""Confirmation seeds are fresh (rxsweep.tuning.confirm): no search trial is a confirmation run,
and no confirmation seed is a seed the search ran. On sweep folders built here by hand, no Ray."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from rxsweep import fileio
from rxsweep.training import run_files
from rxsweep.tuning import sweep_files
from rxsweep.tuning.confirm import (RUN_KEY, choice_to_confirm, choose_configs, confirm_dir, confirm_runs,
                                    fresh_seeds, read_confirm_file, search_seeds, write_confirm_file)
from rxsweep.tuning.space_yaml import load_space

SPACE = load_space(Path(__file__).parent / "spaces" / "tiny.yaml")  # objectives: accuracy, mixing
ERM, DANN = {"domain_label": "none", "lr": 0.01}, {"domain_label": "plate", "lr": 0.01}


def _trial(sweep_dir: Path, trial_id: str, params: dict, status: str = "completed", acc: float = 0.3,
           mixing: float = 0.5) -> None:
    run = sweep_dir / sweep_files.TRIALS_DIR / trial_id
    run.mkdir(parents=True)
    fileio.write_json(run / sweep_files.PARAMS_FILE, params)
    fileio.write_json(run / sweep_files.STATUS_FILE, {"status": status})
    run_files.write_history(run / run_files.METRICS_FILE, [{"epoch": 1, "heldout_val_acc": acc, "mixing": mixing}])


def _results(runs: list[dict], prefix: str = "c") -> list[SimpleNamespace]:
    """What Tune's ResultGrid yields for the confirmation runs: each run's config and its folder."""
    return [SimpleNamespace(config=run, path=f"/somewhere/{prefix}{i}") for i, run in enumerate(runs)]


@pytest.mark.parametrize("taken, n, expected", [
    ({0}, 2, [1, 2]),
    ({0, 2}, 3, [1, 3, 4]),
    (set(), 3, [0, 1, 2]),
    ({5}, 3, [0, 1, 2]),
    ({1, 0, 3}, 1, [2]),
    ({0}, 0, []),
])
def test_fresh_seeds_are_the_first_non_negative_integers_the_search_did_not_run(taken, n, expected):
    assert fresh_seeds(taken, n) == expected


def test_no_search_trial_is_a_confirmation_run_and_no_seed_is_reused(tmp_path):
    """Every search trial on seed 0 (the default): each method's chosen configuration runs seeds
    1..N, all new runs; the chosen trial, which ran to the end, stands for none of them."""
    _trial(tmp_path, "e1", ERM, acc=0.4)
    _trial(tmp_path, "e2", {**ERM, "lr": 0.002}, acc=0.2, mixing=0.4)
    _trial(tmp_path, "d1", DANN, acc=0.3, mixing=0.7)
    chosen = choose_configs(tmp_path, SPACE)
    assert {m: c["source_trial"] for m, c in chosen.items()} == {"erm": "e1", "dann": "d1"}
    assert all(c["search_seeds"] == [0] and "reused_seed" not in c for c in chosen.values())
    runs = confirm_runs(chosen, 2)
    assert len(runs) == 2 * len(chosen)  # every seed of every method a new run
    assert sorted((r[RUN_KEY]["domain_label"], r[RUN_KEY]["seed"]) for r in runs) == [
        ("none", 1), ("none", 2), ("plate", 1), ("plate", 2)]
    before = write_confirm_file(tmp_path, chosen, 2)  # the choice, before any run ended
    assert all(r["seeds"] == [1, 2] and r["trial_ids"] == [None, None] for r in before.values())
    record = write_confirm_file(tmp_path, chosen, 2, _results(runs))
    assert record == read_confirm_file(tmp_path)
    for method, r in record.items():
        assert r["search_seeds"] == [0] and r["seeds"] == [1, 2] and "reused_seed" not in r
        assert len(r["trial_ids"]) == 2 and None not in r["trial_ids"]
        assert r["source_trial"] not in r["trial_ids"]
        assert not set(r["trial_ids"]) & {"e1", "e2", "d1"}
        # aligned: the id at a seed is the run of that seed with the chosen parameters
        by_id = {Path(x.path).name: x.config[RUN_KEY] for x in _results(runs)}
        assert [by_id[i] for i in r["trial_ids"]] == [{**r["params"], "seed": s} for s in r["seeds"]]


def test_confirmation_seeds_skip_every_seed_the_search_ran(tmp_path):
    """Search trials on seeds 0 and 2 (a params.json may carry a seed: TrainConfig reads it; an
    errored trial's seed counts too): confirmation with N=3 runs seeds 1, 3 and 4."""
    _trial(tmp_path, "e1", ERM, acc=0.4)
    _trial(tmp_path, "e2", {**ERM, "lr": 0.002, "seed": 2}, acc=0.2, mixing=0.4)
    _trial(tmp_path, "d1", DANN, acc=0.3, mixing=0.7)
    _trial(tmp_path, "d2", {**DANN, "lr": 0.005, "seed": 5}, status="error", acc=0.9, mixing=0.9)
    assert search_seeds(tmp_path, SPACE) == [0, 2, 5]
    chosen = choose_configs(tmp_path, SPACE)
    assert {m: c["source_trial"] for m, c in chosen.items()} == {"erm": "e1", "dann": "d1"}  # d2 errored
    runs = confirm_runs(chosen, 3)
    assert sorted(r[RUN_KEY]["seed"] for r in runs) == [1, 1, 3, 3, 4, 4]
    record = write_confirm_file(tmp_path, chosen, 3, _results(runs))
    for r in record.values():
        assert r["search_seeds"] == [0, 2, 5] and r["seeds"] == [1, 3, 4]
        assert not set(r["seeds"]) & set(r["search_seeds"]) and r["source_trial"] not in r["trial_ids"]


def test_a_fixed_training_seed_is_the_search_seed_not_the_samplers(tmp_path):
    """The space's top-level `seed` seeds Optuna's sampler; the trials' training seed is
    `fixed: {seed: ...}` (TrainConfig's default 0 without it), and that is what confirmation avoids."""
    space = dataclasses.replace(SPACE, seed=1, fixed={**SPACE.fixed, "seed": 0})
    _trial(tmp_path, "e1", ERM)
    assert search_seeds(tmp_path, space) == [0]
    space = dataclasses.replace(SPACE, seed=0, fixed={**SPACE.fixed, "seed": 1})
    assert search_seeds(tmp_path, space) == [1]
    assert [r[RUN_KEY]["seed"] for r in confirm_runs(choose_configs(tmp_path, space), 3)] == [0, 2, 3]
    (tmp_path / sweep_files.TRIALS_DIR / "lost").mkdir()  # a folder without params.json: the fixed seed
    _trial(tmp_path, "e2", {**ERM, "seed": 4})
    assert search_seeds(tmp_path, space) == [1, 4]


def test_resume_keeps_the_choice_and_the_seeds_of_the_confirm_file(tmp_path):
    """A driver killed during the confirmation runs left confirm.json: `--resume` confirms the same
    choice with the same fresh seeds, although the search folder would now choose otherwise; without
    resume (or without the file) the choice is made again."""
    _trial(tmp_path, "e1", ERM, acc=0.4)
    _trial(tmp_path, "d1", DANN, acc=0.3, mixing=0.7)
    chosen = choose_configs(tmp_path, SPACE)
    assert choice_to_confirm(tmp_path, SPACE, resume=True) == chosen  # no file yet
    runs = confirm_runs(chosen, 2)
    write_confirm_file(tmp_path, chosen, 2, _results(runs[:1]))  # one run ended before the kill
    _trial(tmp_path, "e9", {**ERM, "lr": 0.003, "seed": 1}, acc=0.9, mixing=0.9)  # would win, on seed 1
    resumed = choice_to_confirm(tmp_path, SPACE, resume=True)
    assert resumed == chosen and resumed["erm"]["source_trial"] == "e1"
    assert confirm_runs(resumed, 2) == runs
    record = write_confirm_file(tmp_path, resumed, 2, _results(runs))
    assert all(r["seeds"] == [1, 2] and None not in r["trial_ids"] for r in record.values())
    assert choice_to_confirm(tmp_path, SPACE, resume=False)["erm"]["source_trial"] == "e9"
    assert choice_to_confirm(tmp_path, SPACE, resume=False)["erm"]["search_seeds"] == [0, 1]


def test_resume_from_a_record_that_reused_the_source_trial(tmp_path):
    """confirm.json written before seeds were fresh ({..., reused_seed: 0, seeds: [0, 1]}, the source
    trial standing for seed 0): a resume drops reused_seed, takes the search seeds from the trials,
    and confirms with fresh seeds, none of them the source trial."""
    _trial(tmp_path, "e1", ERM, acc=0.4)
    fileio.write_json(confirm_dir(tmp_path) / sweep_files.CONFIRM_FILE, {
        "erm": {"source_trial": "e1", "params": ERM, "base_method": "erm", "rank": 1.0, "reused_seed": 0,
                "seeds": [0, 1], "trial_ids": ["e1", "c0"]}})
    chosen = choice_to_confirm(tmp_path, SPACE, resume=True)
    assert chosen == {"erm": {"source_trial": "e1", "params": ERM, "base_method": "erm", "rank": 1.0,
                              "search_seeds": [0]}}
    record = write_confirm_file(tmp_path, chosen, 2)
    assert record["erm"]["seeds"] == [1, 2] and record["erm"]["trial_ids"] == [None, None]
    assert "reused_seed" not in read_confirm_file(tmp_path)["erm"]


def test_the_sweeps_confirm_step_runs_fresh_seeds_and_resumes_its_choice(tmp_path, monkeypatch, capsys):
    """rxsweep.tuning.sweep's confirm step, with Tune's run of the grid stood in for (no Ray): the
    grid holds only fresh seeds; a resumed driver confirms the choice its predecessor recorded."""
    from rxsweep.tuning import sweep

    grids = []

    def tuner(folder, space, data, shared, concurrency, resume, echo, trainable, param_space):
        grids.append(grid := param_space[RUN_KEY]["grid_search"])
        return SimpleNamespace(fit=lambda: _results([{RUN_KEY: r} for r in grid], prefix=f"r{len(grids)}-"))

    monkeypatch.setattr(sweep, "_tuner", tuner)
    storage = SimpleNamespace(local=tmp_path, push=lambda: None, folder=lambda name: None)
    sites = pd.DataFrame({"split": ["train", "heldout_test"], "source": "rxrx1", "experiment": ["A-01", "A-02"]})
    shared = SimpleNamespace(index=SimpleNamespace(table=sites))
    _trial(tmp_path, "e1", ERM, acc=0.4)
    _trial(tmp_path, "d1", DANN, acc=0.3, mixing=0.7)
    sweep._confirm(storage, SPACE, "data", shared, 2, False, True)  # tiny.yaml: confirm.seeds 2
    assert sorted(r["seed"] for r in grids[0]) == [1, 1, 2, 2]
    assert "seeds [1, 2] (fresh: the search ran seed(s) [0])" in capsys.readouterr().err
    first = read_confirm_file(tmp_path)
    assert {m: r["seeds"] for m, r in first.items()} == {"erm": [1, 2], "dann": [1, 2]}
    assert all(r["source_trial"] not in r["trial_ids"] and None not in r["trial_ids"] for r in first.values())
    _trial(tmp_path, "e9", {**ERM, "lr": 0.003}, acc=0.9, mixing=0.9)  # would win a new choice
    sweep._confirm(storage, SPACE, "data", shared, 2, True, False)
    assert grids[1] == grids[0] and read_confirm_file(tmp_path)["erm"]["source_trial"] == "e1"
