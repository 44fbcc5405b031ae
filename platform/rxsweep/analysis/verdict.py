"""The verdict: does a domain adversary beat ERM on experiments nothing was chosen on?

Selection used the held-out *validation* experiments (the search, then the choice of each method's
configuration to confirm, rxsweep.tuning.confirm). The verdict judges on the held-out *test*
experiments only, with every confirmation seed of each method:

    arm          ERM, DANN, CDANN: the confirmation runs of each method (its seeds' final embeddings);
                 ERM + sphering, ERM + Harmony: the ERM runs' test well profiles after a post-hoc
                 correction (rxsweep.metrics.posthoc; predictions, and so accuracy, unchanged);
                 features + LR: the hand-made-features baseline (one deterministic run)
    metric       heldout_test_acc   treatment-well accuracy of the sites (top-1)
                 mixing             well-level batch mixing (rxsweep.metrics.well_profiles)
                 replicate_map      cross-experiment replicate retrieval mAP of well profiles
    value        the mean over the arm's seeds of the metric on all test wells
    interval     percentile bootstrap of the test wells resampled within each experiment
                 (rxsweep.metrics.intervals); in each resample the arm's value is the mean over
                 its seeds. Accuracy resamples with replacement; mixing and mAP score the distinct
                 wells of a resample (kNN scores cannot take duplicates, and a duplicated well
                 would be its copy's replicate: the interval is wider, conservative). N_BOOT
                 resamples for accuracy and mAP, N_BOOT_MIXING for mixing (its costly part)
    word         against ERM, from the interval of (arm - ERM) over the *same* resamples:
                 "better" / "worse" when it excludes 0, else "no detectable difference"

``verdict.json`` (SWEEP_DIR/verdict.json) holds, for each arm: name, method, configuration, seeds
and trial ids, the number of search trials of its method, and for each metric mean, lo, hi and
the word against ERM (None for ERM itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rxsweep import fileio
from rxsweep.analysis.sweep_folder import Sweep, load_sweep
from rxsweep.metrics.embedding_scores import read_embeddings
from rxsweep.metrics.intervals import resample_wells, verdict_word
from rxsweep.metrics.posthoc import corrected_profiles
from rxsweep.metrics.replicate_retrieval import replicate_retrieval
from rxsweep.metrics.well_profiles import stack, well_mixing_scores, well_profiles
from rxsweep.tuning import sweep_files

SPLIT = "heldout_test"
METRICS = ("heldout_test_acc", "mixing", "replicate_map")
N_BOOT = 400
#: Resamples of the mixing interval: each one scores the kNN metrics and a cross-validated probe
#: again for every seed of every arm (~0.3 s a table on the tiny preset, 2 cores), so fewer.
N_BOOT_MIXING = 50
#: The metrics resampled N_BOOT times (cheap: sums over wells, one retrieval).
RESAMPLED = ("heldout_test_acc", "replicate_map")
LEVEL = 0.95
#: Arm names as the report prints them, by method (post-hoc arms add their correction).
LABELS = {"erm": "ERM", "dann": "DANN", "cdann": "CDANN"}
POSTHOC = {"sphering": "ERM + sphering", "harmony": "ERM + Harmony"}
FEATURES = "features + LR"


@dataclass
class Arm:
    """One row of the verdict: a method's runs on the test split (one table a seed)."""
    name: str
    method: str
    tables: list[pd.DataFrame]  # site rows of the test split, one a seed
    config: dict = field(default_factory=dict)
    seeds: list = field(default_factory=list)
    trial_ids: list = field(default_factory=list)
    search_trials: int = 0
    correction: str | None = None  # post-hoc correction of the well profiles


class _Scored:
    """What the bootstrap needs of one seed's table, computed once: treatment hits and counts by
    well, and the (possibly corrected) well profiles indexed by well id."""

    def __init__(self, table: pd.DataFrame, correction: str | None, seed: int) -> None:
        treat = table[table["well_type"] == "treatment"]
        hits = (treat["prediction"] == treat["label"]).astype(float)
        self.hits = hits.groupby(treat["well_id"]).sum()
        self.count = treat.groupby("well_id").size().astype(float)
        profiles = well_profiles(table)
        if correction is not None:
            profiles = corrected_profiles(profiles, correction, **({"seed": seed} if correction == "harmony" else {}))
        self.profiles = profiles.set_index("well_id", drop=False)

    def accuracy(self, wells: np.ndarray) -> float:
        hits = self.hits.reindex(wells).fillna(0.0).to_numpy().sum()
        count = self.count.reindex(wells).fillna(0.0).to_numpy().sum()
        return hits / count if count else math.nan

    def mixing(self, wells: np.ndarray) -> float:
        return float(well_mixing_scores(self.profiles.loc[np.unique(wells)].reset_index(drop=True), SPLIT)["mixing"])

    def replicate_map(self, wells: np.ndarray) -> float:
        rows = self.profiles.loc[np.unique(wells)]
        if rows["experiment"].nunique() < 2:
            return math.nan
        return float(replicate_retrieval(stack(rows["embedding"]), rows["label"].to_numpy(),
                                         rows["experiment"].to_numpy())["map"])

    def value(self, metric: str, wells: np.ndarray) -> float:
        return {"heldout_test_acc": self.accuracy, "mixing": self.mixing,
                "replicate_map": self.replicate_map}[metric](wells)


def arms_of(sweep: Sweep) -> list[Arm]:
    """The verdict's arms, from the confirmation runs and the features baseline (ERM first)."""
    confirm = sweep.confirm_record
    search_counts = pd.Series([t.method for t in sweep.trials]).value_counts().to_dict() if sweep.trials else {}
    by_id = {t.trial_id: t for t in sweep.confirm}
    arms = []
    for method in sorted(confirm, key=lambda m: (m != "erm", m)):
        record = confirm[method]
        runs = [by_id.get(i) for i in record.get("trial_ids", [])]
        done = [(s, t) for s, t in zip(record.get("seeds", []), runs)
                if t is not None and t.status == "completed" and t.embeddings is not None]
        if not done:
            continue
        tables = [_test_rows(read_embeddings(t.embeddings)) for _, t in done]
        common = dict(config=record.get("params", {}), seeds=[s for s, _ in done],
                      trial_ids=[t.trial_id for _, t in done], search_trials=int(search_counts.get(method, 0)))
        arms.append(Arm(LABELS.get(method, method.upper()), method, tables, **common))
        if method == "erm":
            arms += [Arm(label, f"erm+{name}", tables, correction=name, **common) for name, label in POSTHOC.items()]
    if sweep.features_baseline is not None:
        arms.append(Arm(FEATURES, "features", [_test_rows(read_embeddings(sweep.features_baseline))], seeds=[0]))
    return arms


def _test_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["split"] == SPLIT].reset_index(drop=True)


def compute_verdict(sweep: Sweep | str | Path, n_boot: int = N_BOOT, n_boot_mixing: int = N_BOOT_MIXING,
                    level: float = LEVEL, seed: int = 0) -> dict:
    """The verdict of a sweep (module doc); {"arms": [], "note": why} when nothing can be judged."""
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    arms = arms_of(sweep)
    erm = next((a for a in arms if a.method == "erm"), None)
    if erm is None:
        return {"split": SPLIT, "arms": [], "note": "no completed ERM confirmation run: nothing to compare against"}
    wells = well_profiles(erm.tables[0])[["well_id", "experiment"]]
    scored = [[_Scored(t, a.correction, s) for t, s in zip(a.tables, a.seeds)] for a in arms]

    def arm_values(k: int, ids: np.ndarray, metrics) -> dict[str, float]:
        return {m: float(np.nanmean([s.value(m, ids) for s in scored[k]])) for m in metrics}

    full = [arm_values(k, wells["well_id"].to_numpy(), METRICS) for k in range(len(arms))]
    boots = np.full((max(n_boot, n_boot_mixing), len(arms), len(METRICS)), np.nan)
    for metrics, count, stream in ((RESAMPLED, n_boot, 0), (("mixing",), n_boot_mixing, 1)):
        rng = np.random.default_rng([seed, stream])
        columns = [METRICS.index(m) for m in metrics]
        for b in range(count):
            ids = wells["well_id"].to_numpy()[resample_wells(wells, rng)]
            for k in range(len(arms)):
                values = arm_values(k, ids, metrics)
                boots[b, k, columns] = [values[m] for m in metrics]
    q = [(1 - level) / 2, (1 + level) / 2]
    reference = next(k for k, a in enumerate(arms) if a is erm)
    out_arms = []
    for k, arm in enumerate(arms):
        metrics = {}
        for j, metric in enumerate(METRICS):
            lo, hi = _quantiles(boots[:, k, j], q)
            word = None
            if k != reference:
                d_lo, d_hi = _quantiles(boots[:, k, j] - boots[:, reference, j], q)
                word = None if math.isnan(d_lo) else verdict_word(d_lo, d_hi)
            metrics[metric] = {"mean": full[k][metric], "lo": lo, "hi": hi, "vs_erm": word}
        out_arms.append({"name": arm.name, "method": arm.method, "config": arm.config, "seeds": arm.seeds,
                         "trial_ids": arm.trial_ids, "search_trials": arm.search_trials,
                         "correction": arm.correction, "metrics": metrics})
    experiments = sorted(wells["experiment"].unique())
    return {"split": SPLIT, "experiments": experiments, "n_wells": len(wells), "n_boot": n_boot,
            "n_boot_mixing": n_boot_mixing,
            "level": level, "metrics": list(METRICS), "arms": out_arms}


def _quantiles(values: np.ndarray, q: list[float]) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(values, q)
    return float(lo), float(hi)


def write_verdict(sweep_dir: str | Path, **kwargs) -> dict:
    """Compute the verdict and write SWEEP_DIR/verdict.json; returns it."""
    verdict = compute_verdict(sweep_dir, **kwargs)
    fileio.write_json(Path(sweep_dir) / sweep_files.VERDICT_FILE, verdict)
    return verdict


def read_verdict(sweep_dir: str | Path) -> dict | None:
    return fileio.read_json(Path(sweep_dir) / sweep_files.VERDICT_FILE)


def headline_text(verdict: dict) -> str:
    """One plain-text answer per adversary, metric by metric, against ERM (what the report shows)."""
    arms = verdict.get("arms") or []
    if not arms:
        return f"Not answerable: {verdict.get('note', 'no verdict')}."
    erm = arms[0]
    seeds = {len(a["seeds"]) for a in arms if a["method"] in LABELS}
    lines = [f"Judged on {len(verdict['experiments'])} held-out test experiments ({verdict['n_wells']} wells), "
             f"{'/'.join(map(str, sorted(seeds)))} seed(s) a method, {int(verdict['level'] * 100)}% bootstrap "
             f"intervals; configurations chosen on validation experiments from "
             + ", ".join(f"{a['search_trials']} {a['name']}" for a in arms if a["method"] in LABELS)
             + " search trials."]
    for arm in arms[1:]:
        parts = []
        for metric in METRICS:
            m, e = arm["metrics"][metric], erm["metrics"][metric]
            parts.append(f"{metric} {m['vs_erm'] or 'not scored'} ({_fmt(m)} vs {_fmt(e)})")
        lines.append(f"{arm['name']} vs ERM: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def _fmt(m: dict) -> str:
    if m["mean"] is None or (isinstance(m["mean"], float) and math.isnan(m["mean"])):
        return "n/a"
    if m["lo"] is None or math.isnan(m["lo"]):
        return f"{m['mean']:.3f}"
    return f"{m['mean']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]"
