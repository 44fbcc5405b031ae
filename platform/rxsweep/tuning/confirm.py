"""Confirmation runs: after the search, the best configuration of each method, run again with
several seeds, to its last epoch, with no early stopping.

A search selects; it does not judge. ASHA stops most trials early, one seed says nothing about
seed-to-seed spread, and the held-out validation experiments chose the winner, so its score there
is optimistic. WILDS asks for 3 seeds and a test set that never selects: the verdict
(rxsweep.analysis.verdict) compares these runs on held-out *test* experiments.

    SWEEP_DIR/confirm/
      confirm.json                 {method: {source_trial, params, base_method, rank, search_seeds,
                                 seeds, trial_ids}}: the choice, the seeds the search ran, and the
                                 confirmation seeds with their runs' trial ids, aligned (None for a
                                 seed whose run has not ended)
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

Seeds (:func:`fresh_seeds`): the confirmation seeds are the first N non-negative integers that no
search trial ran (:func:`search_seeds`: every trial folder of the search, whatever its status), so
with every search trial on seed 0 they are 1..N. No search trial is ever a confirmation run, not
even the chosen one when it ran to the end: the configuration that won on validation by luck would
keep that luck (its seed's draw of init, data order and augmentation) in one of its test seeds, and
a method with more search trials would get more of it (a winner's curse). The seeds are the same
for every method.
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


def search_seeds(sweep_dir: str | Path, space: SearchSpace) -> list[int]:
    """The training seeds the search in ``sweep_dir`` ran, sorted: TrainConfig.seed of every trial
    folder, whatever its status (an errored or lost trial drew that seed too). A trial's seed is
    ``space.trial_config(params).seed``: the space's ``fixed: {seed: ...}`` or TrainConfig's default
    0 (a seed is a run setting, never a searched parameter; the space's own top-level ``seed`` seeds
    the Optuna sampler, not training). A folder without params.json ran the space's base seed."""
    seeds = set()
    for folder in sorted((Path(sweep_dir) / sweep_files.TRIALS_DIR).glob("*")):
        if not folder.is_dir():
            continue
        params = fileio.read_json(folder / sweep_files.PARAMS_FILE)
        cfg = space.base_config() if params is None else space.trial_config(params)
        seeds.add(int(cfg.seed))
    return sorted(seeds)


def fresh_seeds(taken, n: int) -> list[int]:
    """The confirmation seeds: the first ``n`` non-negative integers not in ``taken`` (the search's
    seeds), ascending. Search seeds {0} -> 1..n; {0, 2} with n=3 -> [1, 3, 4]. See the module doc."""
    taken = {int(s) for s in taken}
    seeds, candidate = [], 0
    while len(seeds) < n:
        if candidate not in taken:
            seeds.append(candidate)
        candidate += 1
    return seeds


def choose_configs(sweep_dir: str | Path, space: SearchSpace) -> dict[str, dict]:
    """{method: {"source_trial", "params", "base_method", "rank", "search_seeds"}} of the search in
    ``sweep_dir`` (see module doc); "search_seeds" is :func:`search_seeds`, the same for every method."""
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
               "stopped": status != "completed"}
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
    searched = search_seeds(sweep_dir, space)
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
                          "search_seeds": list(searched)}
    return chosen


def choice_to_confirm(sweep_dir: str | Path, space: SearchSpace, resume: bool = False) -> dict[str, dict]:
    """What the confirmation runs confirm: :func:`choose_configs`, or, when ``resume`` finds the
    confirm.json a killed driver wrote, its choice and search seeds again (its seeds and trial ids
    are recomputed). A record written before "search_seeds" was kept gets them from the search's
    folders; its "reused_seed" (a search trial once stood for a seed's run) is dropped."""
    previous = (read_confirm_file(sweep_dir) or {}) if resume else {}
    chosen = {m: {k: v for k, v in c.items() if k not in ("seeds", "trial_ids", "reused_seed")}
              for m, c in previous.items()}
    if not chosen:
        return choose_configs(sweep_dir, space)
    if any("search_seeds" not in c for c in chosen.values()):
        searched = search_seeds(sweep_dir, space)
        chosen = {m: {**c, "search_seeds": c.get("search_seeds", searched)} for m, c in chosen.items()}
    return chosen


def confirm_seeds(choice: dict, seeds: int) -> list[int]:
    """A chosen configuration's confirmation seeds: :func:`fresh_seeds` of its "search_seeds"."""
    return fresh_seeds(choice["search_seeds"], seeds)


def confirm_runs(chosen: dict[str, dict], seeds: int) -> list[dict]:
    """The Tune configs of the confirmation runs: every chosen configuration with each of its
    ``seeds`` fresh seeds (:func:`confirm_seeds`), all new runs: no search trial is one of them."""
    return [{RUN_KEY: {**choice["params"], "seed": seed}} for choice in chosen.values()
            for seed in confirm_seeds(choice, seeds)]


def write_confirm_file(sweep_dir: str | Path, chosen: dict[str, dict], seeds: int, results=()) -> dict:
    """confirm.json: the choice, its confirmation seeds and, once the runs ended, their trial ids
    (aligned with the seeds; None for a seed with no run in ``results``)."""
    by_run = {}
    for result in results:
        run = (getattr(result, "config", None) or {}).get(RUN_KEY)
        path = getattr(result, "path", None)
        if run is not None and path:
            by_run[_key(run)] = Path(path).name
    record = {}
    for method, choice in chosen.items():
        used = confirm_seeds(choice, seeds)
        ids = [by_run.get(_key({**choice["params"], "seed": s})) for s in used]
        record[method] = {**choice, "seeds": used, "trial_ids": ids}
    fileio.write_json(confirm_dir(sweep_dir) / sweep_files.CONFIRM_FILE, record)
    return record


def _key(run: dict) -> str:
    return json.dumps(run, sort_keys=True, default=str)


def read_confirm_file(sweep_dir: str | Path) -> dict | None:
    return fileio.read_json(confirm_dir(sweep_dir) / sweep_files.CONFIRM_FILE)
