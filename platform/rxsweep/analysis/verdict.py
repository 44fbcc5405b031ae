"""The verdict: does a domain adversary beat ERM on experiments nothing was chosen on?

Selection used the held-out *validation* experiments (the search, then the choice of each method's
configuration to confirm, rxsweep.tuning.confirm). The verdict judges on the held-out *test*
experiments only, with every confirmation seed of each method:

    arm          ERM, DANN, CDANN: the confirmation runs of each method (its seeds' final embeddings);
                 "<method> + AR": the best adaptive-resampling configuration's, when AR was searched
                 (the methods' arms are then the plain-sampling trials');
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
                 would be its copy's replicate), placed around the value on all the wells
                 (SUBSAMPLED). N_BOOT resamples for accuracy and mAP, N_BOOT_MIXING for mixing
                 (its costly part), on processes
    word         against ERM, from the interval of (arm - ERM) over the *same* resamples:
                 "better" / "worse" when it excludes 0, else "no detectable difference"

``verdict.json`` (SWEEP_DIR/verdict.json) holds, for each arm: name, method, configuration, seeds
and trial ids, the number of search trials of its method, and for each metric mean, lo, hi and
the word against ERM (None for ERM itself).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

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
N_BOOT = 200
#: Resamples of the mixing interval: each one scores the kNN metrics and a cross-validated probe
#: again for every seed of every arm (~0.3 s a table on the tiny preset, 2 cores), so fewer.
N_BOOT_MIXING = 30
#: The metrics resampled N_BOOT times (cheap: sums over wells, one retrieval).
RESAMPLED = ("heldout_test_acc", "replicate_map")
#: Metrics scored on the distinct wells of a resample (~63 % of them). A subsample scores
#: systematically apart from the whole (fewer profiles: smaller neighbourhoods, fewer retrieval
#: candidates; measured on a make run, ERM + Harmony's mixing was 0.909 on all wells and
#: 0.84-0.88 on the subsamples), so their intervals are the subsamples' spread placed around the
#: statistic of all the wells: the percentile interval shifted by (all wells - median).
SUBSAMPLED = ("mixing", "replicate_map")
LEVEL = 0.95
#: Arm names as the report prints them, by method (post-hoc arms add their correction).
LABELS = {"erm": "ERM", "dann": "DANN", "cdann": "CDANN"}
#: The arm of the best adaptive-resampling configuration, when AR was searched (rxsweep.tuning.confirm
#: groups its trials apart from the methods': the methods' arms are then plain sampling).
AR_METHOD = sweep_files.AR_GROUP
#: Arms that are trained runs (not a post-hoc correction or the features baseline).
TRAINED = (*LABELS, AR_METHOD)
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
    """What the bootstrap needs of one seed's table, computed once and aligned with the test wells
    (``well_ids``, the rows a resample's positions index): treatment hits and counts, and the
    (possibly corrected) well profiles."""

    def __init__(self, table: pd.DataFrame, correction: str | None, seed: int, well_ids: np.ndarray) -> None:
        treat = table[table["well_type"] == "treatment"]
        hits = (treat["prediction"] == treat["label"]).astype(float).groupby(treat["well_id"]).sum()
        self.hits = hits.reindex(well_ids).fillna(0.0).to_numpy()
        self.count = treat.groupby("well_id").size().reindex(well_ids).fillna(0.0).to_numpy()
        profiles = well_profiles(table)
        if correction is not None:
            profiles = corrected_profiles(profiles, correction, **({"seed": seed} if correction == "harmony" else {}))
        profiles = profiles.set_index("well_id", drop=False)
        if set(profiles.index) != set(well_ids):
            raise ValueError("an arm's test wells differ from ERM's: the runs were not on the same split")
        self.profiles = profiles.loc[well_ids].reset_index(drop=True)
        self.vectors = stack(self.profiles["embedding"])
        self.labels = self.profiles["label"].to_numpy()
        self.experiments = self.profiles["experiment"].to_numpy()

    def accuracy(self, rows: np.ndarray) -> float:
        count = self.count[rows].sum()
        return float(self.hits[rows].sum() / count) if count else math.nan

    def mixing(self, rows: np.ndarray) -> float:
        return float(well_mixing_scores(self.profiles.iloc[np.unique(rows)], SPLIT)["mixing"])

    def replicate_map(self, rows: np.ndarray) -> float:
        rows = np.unique(rows)
        if len(set(self.experiments[rows])) < 2:
            return math.nan
        return float(replicate_retrieval(self.vectors[rows], self.labels[rows], self.experiments[rows])["map"])

    def value(self, metric: str, rows: np.ndarray) -> float:
        return {"heldout_test_acc": self.accuracy, "mixing": self.mixing,
                "replicate_map": self.replicate_map}[metric](rows)


def _resampled(scored: list[list[_Scored]], resamples: list[np.ndarray], metrics: tuple[str, ...]) -> np.ndarray:
    """[resample, arm, metric]: each arm's mean over its seeds on each resample."""
    return np.array([[[_mean_of_finite([s.value(m, rows) for s in seeds]) for m in metrics] for seeds in scored]
                     for rows in resamples])


def arms_of(sweep: Sweep) -> list[Arm]:
    """The verdict's arms, from the confirmation runs and the features baseline (ERM first)."""
    confirm = sweep.confirm_record
    adaptive = [t.config.get("resampling") == "adaptive" for t in sweep.trials]
    ar_searched = len(set(adaptive)) > 1  # as rxsweep.tuning.confirm groups the trials
    groups = [AR_METHOD if ar and ar_searched else t.method for t, ar in zip(sweep.trials, adaptive)]
    search_counts = pd.Series(groups).value_counts().to_dict() if groups else {}
    by_id = {t.trial_id: t for t in [*sweep.trials, *sweep.confirm]}  # a completed source trial is a seed's run
    arms = []
    for method in sorted(confirm, key=lambda m: (m != "erm", m == AR_METHOD, m)):  # ERM first, AR after the adversaries
        record = confirm[method]
        runs = [by_id.get(i) for i in record.get("trial_ids", [])]
        done = [(s, t) for s, t in zip(record.get("seeds", []), runs)
                if t is not None and t.status == "completed" and t.embeddings is not None]
        if not done:
            continue
        tables = [_test_rows(read_embeddings(t.embeddings)) for _, t in done]
        common = dict(config=record.get("params", {}), seeds=[s for s, _ in done],
                      trial_ids=[t.trial_id for _, t in done], search_trials=int(search_counts.get(method, 0)))
        arms.append(Arm(_arm_name(method, record), method, tables, **common))
        if method == "erm":
            arms += [Arm(label, f"erm+{name}", tables, correction=name, **common) for name, label in POSTHOC.items()]
    if sweep.features_baseline is not None:
        arms.append(Arm(FEATURES, "features", [_test_rows(read_embeddings(sweep.features_baseline))], seeds=[0]))
    return arms


def _arm_name(method: str, record: dict) -> str:
    if method == AR_METHOD:
        return f"{LABELS.get(record.get('base_method'), 'best')} + AR"
    return LABELS.get(method, method.upper())


def _test_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["split"] == SPLIT].reset_index(drop=True)


def compute_verdict(sweep: Sweep | str | Path, n_boot: int = N_BOOT, n_boot_mixing: int = N_BOOT_MIXING,
                    level: float = LEVEL, seed: int = 0, workers: int | None = None) -> dict:
    """The verdict of a sweep (module doc); {"arms": [], "note": why} when nothing can be judged.
    ``workers``: processes for the resamples (default: the machine's CPUs, at most 8)."""
    workers = workers or min(8, os.cpu_count() or 1)
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    arms = arms_of(sweep)
    erm = next((a for a in arms if a.method == "erm"), None)
    if erm is None:
        return {"split": SPLIT, "arms": [], "note": "no completed ERM confirmation run: nothing to compare against"}
    wells = well_profiles(erm.tables[0])[["well_id", "experiment"]]
    ids = wells["well_id"].to_numpy()
    scored = [[_Scored(t, a.correction, s, ids) for t, s in zip(a.tables, a.seeds)] for a in arms]
    full = _resampled(scored, [np.arange(len(wells))], METRICS)[0]
    boots = np.full((max(n_boot, n_boot_mixing), len(arms), len(METRICS)), np.nan)
    for metrics, count, stream in ((RESAMPLED, n_boot, 0), (("mixing",), n_boot_mixing, 1)):
        rng = np.random.default_rng([seed, stream])
        resamples = [resample_wells(wells, rng) for _ in range(count)]
        # on processes: mixing alone is a kNN and a cross-validated probe per seed, arm and resample
        chunks = np.array_split(np.arange(count), min(count, workers)) if count else []
        parts = Parallel(n_jobs=len(chunks) or 1)(
            delayed(_resampled)(scored, [resamples[i] for i in chunk], metrics) for chunk in chunks)
        if parts:
            boots[:count, :, [METRICS.index(m) for m in metrics]] = np.concatenate(parts)
    q = [(1 - level) / 2, (1 + level) / 2]
    reference = next(k for k, a in enumerate(arms) if a is erm)
    out_arms = []
    for k, arm in enumerate(arms):
        metrics = {}
        for j, metric in enumerate(METRICS):
            centre = metric in SUBSAMPLED
            lo, hi = _quantiles(boots[:, k, j], q, full[k][j] if centre else None)
            word = None
            if k != reference:
                d_lo, d_hi = _quantiles(boots[:, k, j] - boots[:, reference, j], q,
                                        full[k][j] - full[reference][j] if centre else None)
                word = None if math.isnan(d_lo) else verdict_word(d_lo, d_hi)
            metrics[metric] = {"mean": float(full[k][j]), "lo": lo, "hi": hi, "vs_erm": word}
        out_arms.append({"name": arm.name, "method": arm.method, "config": arm.config, "seeds": arm.seeds,
                         "trial_ids": arm.trial_ids, "search_trials": arm.search_trials,
                         "correction": arm.correction, "metrics": metrics})
    experiments = sorted(wells["experiment"].unique())
    return {"split": SPLIT, "experiments": experiments, "n_wells": len(wells), "n_boot": n_boot,
            "n_boot_mixing": n_boot_mixing,
            "level": level, "metrics": list(METRICS), "arms": out_arms}


def _mean_of_finite(values: list[float]) -> float:
    """The mean over seeds of the scored ones; NaN when none was (e.g. mixing with one experiment
    a cell type)."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _quantiles(values: np.ndarray, q: list[float], centre: float | None = None) -> tuple[float, float]:
    """Percentile interval of the resamples' values; with ``centre``, shifted so that their median
    falls on it (the statistic of all the wells: see SUBSAMPLED)."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(values, q)
    shift = 0.0 if centre is None or math.isnan(centre) else centre - float(np.median(values))
    return float(lo + shift), float(hi + shift)


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
    seeds = {len(a["seeds"]) for a in arms if a["method"] in TRAINED}
    lines = [f"Judged on {len(verdict['experiments'])} held-out test experiments ({verdict['n_wells']} wells), "
             f"{'/'.join(map(str, sorted(seeds)))} seed(s) a method, {int(verdict['level'] * 100)}% bootstrap "
             f"intervals; configurations chosen on validation experiments from "
             + ", ".join(f"{a['search_trials']} {a['name']}" for a in arms if a["method"] in TRAINED)
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
