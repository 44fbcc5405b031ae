"""Confirmation runs: after the search, the best configuration of each method, run again with
several seeds, to its last epoch, with no early stopping.

A search selects; it does not judge. ASHA stops most trials early, one seed says nothing about
seed-to-seed spread, and the held-out validation experiments chose the winner, so its score there
is optimistic. WILDS asks for 3 seeds and a test set that never selects: the verdict
(rxsweep.analysis.verdict) compares these runs on held-out *test* experiments.

    SWEEP_DIR/confirm/
      confirm.json                 {method: {source_trial, params, rank, reused_seed, seeds, trial_ids}}:
                                 the choice, and the run of each seed (the source trial itself for
                                 reused_seed, when it ran to the end)
      trials/<trial_id>/           run folders, as a search trial's (params.json holds the seed)
      tune/                        Ray Tune's experiment folder of the confirmation runs

Selection (:func:`choose_configs`): for each method present in the search (erm, dann, cdann: see
TrainConfig.method; when adaptive resampling was searched, i.e. trials with and without it ran,
the methods' trials without it, and one more group, ``ar``, of every trial with it: so the verdict
compares the best AR configuration with plain-sampling ERM), the trial of that method with the best aggregate rank on the space's
objectives at its last reported epoch (rxsweep.metrics.ranks; held-out validation only), among
the method's completed trials when it has any: a trial the scheduler stopped was judged worse on
the first objective, and its early epoch's scores are not comparable with a finished trial's (in
a measured embedded default, a DANN stopped at epoch 4 out-ranked a finished one on the mixing of
a half-trained model). Among trials lacking an objective, the best on the first. Errored and lost
trials are never chosen.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from rxsweep import fileio
from rxsweep.metrics.ranks import aggregate_rank
from rxsweep.training import run_files
from rxsweep.tuning import sweep_files
from rxsweep.tuning.space import SearchSpace

#: Trial statuses whose last reported epoch a selection may use.
SELECTABLE = ("completed", "stopped")
#: The key of a confirmation run's Tune config: {"run": {params..., "seed": s}}.
RUN_KEY = "run"


def confirm_dir(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / sweep_files.CONFIRM_DIR


def choose_configs(sweep_dir: str | Path, space: SearchSpace) -> dict[str, dict]:
    """{method: {"source_trial", "params", "rank"}} of the search in ``sweep_dir`` (see module doc)."""
    rows = []
    for folder in sorted((Path(sweep_dir) / sweep_files.TRIALS_DIR).glob("*")):
        status = (fileio.read_json(folder / sweep_files.STATUS_FILE) or {}).get("status")
        params = fileio.read_json(folder / sweep_files.PARAMS_FILE)
        history = run_files.read_history(folder / run_files.METRICS_FILE)
        if status not in SELECTABLE or params is None or not history:
            continue
        last = history[-1]
        cfg = space.trial_config(params)
        row = {"trial_id": folder.name, "params": params, "method": cfg.method, "adaptive": cfg.adaptive,
               "seed": cfg.seed, "stopped": status != "completed"}
        for objective in space.objectives:
            value = last.get(objective.metric)
            value = math.nan if value is None else float(value)
            row[objective.metric] = value if objective.mode == "max" else -value  # higher is better
        rows.append(row)
    if not rows:
        return {}
    table = pd.DataFrame(rows)
    table["base_method"] = table["method"]
    if table["adaptive"].nunique() > 1:  # AR searched: its own group, the methods without it
        table["method"] = table["method"].where(~table["adaptive"], sweep_files.AR_GROUP)
    metrics = [o.metric for o in space.objectives]
    chosen = {}
    for method, group in table.groupby("method", sort=True):
        if not group["stopped"].all():
            group = group[~group["stopped"]]
        group = group.assign(rank=aggregate_rank(group[metrics]))
        best = group.sort_values(["rank", metrics[0]], ascending=[True, False], na_position="last",
                                 kind="stable").iloc[0]
        chosen[method] = {"source_trial": best["trial_id"], "params": best["params"],
                          "base_method": best["base_method"],
                          "rank": None if pd.isna(best["rank"]) else float(best["rank"]),
                          # a completed search trial is already the run of its own seed, to the end
                          "reused_seed": None if best["stopped"] else int(best["seed"])}
    return chosen


def confirm_runs(chosen: dict[str, dict], seeds: int) -> list[dict]:
    """The Tune configs of the confirmation runs: every chosen configuration with seeds 0..N-1,
    but for the seed its source trial already ran to the last epoch (``reused_seed``): that run is
    the same configuration and seed, and its scores on the test experiments played no part in
    choosing it (selection reads validation only)."""
    return [{RUN_KEY: {**choice["params"], "seed": seed}} for choice in chosen.values() for seed in range(seeds)
            if seed != choice.get("reused_seed")]


def write_confirm_file(sweep_dir: str | Path, chosen: dict[str, dict], seeds: int, results=()) -> dict:
    """confirm.json: the choice, and once the runs ended, each method's trial ids by seed."""
    by_run = {}
    for result in results:
        run = (getattr(result, "config", None) or {}).get(RUN_KEY)
        path = getattr(result, "path", None)
        if run is not None and path:
            by_run[_key(run)] = Path(path).name
    record = {}
    for method, choice in chosen.items():
        ids = [choice["source_trial"] if s == choice.get("reused_seed") else by_run.get(_key({**choice["params"], "seed": s}))
               for s in range(seeds)]
        record[method] = {**choice, "seeds": list(range(seeds)), "trial_ids": ids}
    fileio.write_json(confirm_dir(sweep_dir) / sweep_files.CONFIRM_FILE, record)
    return record


def _key(run: dict) -> str:
    return json.dumps(run, sort_keys=True, default=str)


def read_confirm_file(sweep_dir: str | Path) -> dict | None:
    return fileio.read_json(confirm_dir(sweep_dir) / sweep_files.CONFIRM_FILE)
