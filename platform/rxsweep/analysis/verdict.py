"""The verdict: does a domain adversary beat ERM on experiments nothing was chosen on?

Selection used the held-out *validation* experiments (the search, then the choice of each method's
configuration to confirm, rxsweep.tuning.confirm). The verdict judges on the held-out *test*
experiments only, with every confirmation seed of each method (fresh seeds: no search trial is a
confirmation run, so the luck that won the search does not reach the test numbers):

    arm          ERM, DANN, CDANN: the confirmation runs of each method (its seeds' final embeddings);
                 "<method> + AR": the best adaptive-resampling configuration's, when AR was searched
                 (the methods' arms are then the plain-sampling trials');
                 ERM + sphering, ERM + Harmony: the ERM runs' test well profiles after a post-hoc
                 correction (rxsweep.metrics.posthoc; predictions, and so accuracy, unchanged);
                 features + LR: the hand-made-features baseline (one deterministic run)
    metric       heldout_test_acc   treatment-well accuracy of the sites (top-1)
    (judged)     mixing             well-level batch mixing (the composite of rxsweep.metrics.mixing)
                 replicate_map      treatment-query replicate mAP across experiments (copairs)
    reported     retrieved_fraction share of treatment siRNAs retrieved (copairs' per-siRNA
                                    permutation test, corrected p < 0.05): its own inference,
                                    shown with its seeds, not bootstrapped
    value        the mean over the arm's seeds of the metric on all test wells; beside it each
                 seed's value and their standard deviation (ddof 1; the figure WILDS reports)
    interval     95 % percentile bootstrap over seeds, siRNAs within cell type (with their wells)
                 and experiments within cell type where it has 3 or more (rxsweep.metrics.intervals:
                 which level carries what, what is held fixed)
    word         against ERM on the same resamples: a normal test with the bootstrap standard
                 error of (arm - ERM), Holm-corrected over every word of the verdict (family-wise
                 error ALPHA); "better" / "worse" by the sign, else "no detectable difference"

``verdict.json`` (SWEEP_DIR/verdict.json) holds, for each arm: name, method, configuration, seeds
and trial ids, the number of search trials of its method, and for each metric mean, lo, hi,
seed_values, seed_sd, the word against ERM (None for ERM itself) and the test behind it
(difference: estimate, se, p, p_holm). At its top: the search's seeds, n_boot, level, alpha,
the correction and the number of words it covers, and which levels were resampled.
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
from rxsweep.metrics.intervals import (ALPHA, MIN_EXPERIMENTS_TO_RESAMPLE, UnitResampler, centred, holm,
                                       normal_p_value, percentile_interval, seed_term, verdict_word)
from rxsweep.metrics.mixing import COMPOSITE_KEYS, batch_mixing_scores
from rxsweep.metrics.posthoc import corrected_profiles
from rxsweep.metrics.replicate_retrieval import replicate_map, replicate_retrieval
from rxsweep.metrics.well_profiles import mixing_parameters, stack, well_profiles
from rxsweep.tuning import sweep_files

SPLIT = "heldout_test"
#: The metrics the verdict judges against ERM (bootstrapped, one word each).
METRICS = ("heldout_test_acc", "mixing", "replicate_map")
#: Reported beside them with their seeds, not judged (module doc).
REPORTED = ("retrieved_fraction",)
#: Resamples, for every metric: 5 beyond each 95 % end, 10 outside the interval (the words rest
#: on the resamples' standard deviation); a resample's mixing is scored on well profiles.
N_BOOT = 200
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

    def __init__(self, table: pd.DataFrame, correction: str | None, seed: int, well_ids: np.ndarray,
                 mixing: dict | None) -> None:
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
        self.treatment = (self.profiles["well_type"] == "treatment").to_numpy()
        self.cell_types = self.profiles["cell_type"].to_numpy()
        self.mixing_parameters = mixing  # the full data's k's for every resample: one definition

    def accuracy(self, rows: np.ndarray) -> float:
        count = self.count[rows].sum()
        return float(self.hits[rows].sum() / count) if count else math.nan

    def mixing(self, rows: np.ndarray) -> float:
        """The mixing composite of the wells at ``rows`` (repeats are copies of one well: never
        each other's neighbours); NaN when the test split cannot be mixed."""
        k = self.mixing_parameters
        if k is None:
            return math.nan
        try:
            return float(batch_mixing_scores(
                self.vectors[rows], self.experiments[rows], strata=self.cell_types[rows], units=rows,
                ilisi_k=k["k_ilisi"], perplexity=k["perplexity"], kbet_k=k["k_kbet"], gc_k=k["k_graph"],
                n_splits=k["n_splits"], keys=COMPOSITE_KEYS)["mixing"])
        except ValueError:  # a resample's cell type left with one experiment, or too few wells
            return math.nan

    def replicate_map(self, rows: np.ndarray) -> float:
        """The treatment-query mAP by rxsweep's vectorised path (the AP copairs' mean is taken of
        in replicate_map), as the bootstrap needs it hundreds of times. Repeated rows are copies:
        never a copy's candidate (same experiment), counted twice as another's."""
        if len(set(self.experiments[rows])) < 2:
            return math.nan
        return float(replicate_retrieval(self.vectors[rows], self.labels[rows], self.experiments[rows],
                                         queries=self.treatment[rows])["map"])

    def full(self) -> dict[str, float]:
        """Every metric on all the wells; mAP and retrieved_fraction with copairs."""
        rows = np.arange(len(self.profiles))
        retrieval = replicate_map(self.vectors, self.labels, self.experiments,
                                  self.profiles["well_type"].to_numpy())
        return {"heldout_test_acc": self.accuracy(rows), "mixing": self.mixing(rows),
                "replicate_map": float(retrieval["map"]), "retrieved_fraction": float(retrieval["retrieved_fraction"])}

    def resampled(self, rows: np.ndarray) -> list[float]:
        """METRICS on one resample (repeated rows and all)."""
        return [self.accuracy(rows), self.mixing(rows), self.replicate_map(rows)]


def _resampled(scored: list[_Scored], resamples: list[np.ndarray]) -> np.ndarray:
    """[resample, table, metric] raw values of METRICS. Runs in a worker process a core: torch
    on one thread, so the probe's folds run in turn (on threads they waited on each other)."""
    import torch

    torch.set_num_threads(1)
    return np.array([[s.resampled(rows) for s in scored] for rows in resamples], dtype=np.float64).reshape(
        len(resamples), len(scored), len(METRICS))


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


def compute_verdict(sweep: Sweep | str | Path, n_boot: int = N_BOOT, level: float = LEVEL, alpha: float = ALPHA,
                    seed: int = 0, workers: int | None = None) -> dict:
    """The verdict of a sweep (module doc); {"arms": [], "note": why} when nothing can be judged.
    ``workers``: processes for the resamples (default: the machine's CPUs, at most 8)."""
    workers = workers or min(8, os.cpu_count() or 1)
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    arms = arms_of(sweep)
    erm = next((a for a in arms if a.method == "erm"), None)
    if erm is None:
        return {"split": SPLIT, "arms": [], "note": "no completed ERM confirmation run: nothing to compare against"}
    profiles = well_profiles(erm.tables[0])
    units = profiles[["well_id", "experiment", "cell_type", "label"]]
    try:
        mixing = mixing_parameters(profiles)
    except ValueError:
        mixing = None
    ids = units["well_id"].to_numpy()
    scored = [[_Scored(t, a.correction, s, ids, mixing) for t, s in zip(a.tables, a.seeds)] for a in arms]
    full = [[s.full() for s in seeds] for seeds in scored]  # [arm][seed] -> metric -> value
    boot = _bootstrap(arms, scored, full, units, n_boot, seed, workers)
    out_arms = [_arm_record(arm, full[k], boot[:, k], level) for k, arm in enumerate(arms)]
    n_words = _judge(out_arms, boot, reference=arms.index(erm), alpha=alpha)
    types = units.groupby("cell_type")["experiment"].nunique()
    return {"split": SPLIT, "experiments": sorted(units["experiment"].unique()), "n_wells": len(units),
            "search_seeds": _search_seeds(sweep), "n_boot": n_boot, "level": level, "alpha": alpha,
            "correction": "holm", "n_words": n_words,
            "resampled": {"seeds": True, "perturbations": True,
                          "experiments_of": sorted(types.index[types >= MIN_EXPERIMENTS_TO_RESAMPLE])},
            "metrics": list(METRICS), "reported": list(REPORTED), "arms": out_arms}


def _bootstrap(arms: list[Arm], scored: list[list[_Scored]], full: list[list[dict]], units: pd.DataFrame,
               n_boot: int, seed: int, workers: int) -> np.ndarray:
    """[resample, arm, metric] of METRICS: each arm's mean over its seeds of their centred values
    on the resampled perturbations and experiments, plus its seed level (rxsweep.metrics.intervals)."""
    rng = np.random.default_rng(seed)
    resampler = UnitResampler(units)
    resamples = [resampler.draw(rng) for _ in range(n_boot)]
    flat = [s for seeds in scored for s in seeds]
    # on processes: a resample's mixing is a kNN and a cross-validated probe per table
    chunks = np.array_split(np.arange(n_boot), min(n_boot, workers))
    raw = np.concatenate(Parallel(n_jobs=len(chunks))(
        delayed(_resampled)(flat, [resamples[i] for i in chunk]) for chunk in chunks))
    draws = {}  # one seed draw per set of runs: ERM and its post-hoc corrections share theirs
    boot = np.full((n_boot, len(arms), len(METRICS)), np.nan)
    start = 0
    for k, (arm, seeds) in enumerate(zip(arms, scored)):
        block = raw[:, start:start + len(seeds)]  # [resample, seed, metric]
        start += len(seeds)
        runs = tuple(arm.trial_ids) or (arm.method,)
        if runs not in draws:
            draws[runs] = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
        for j, metric in enumerate(METRICS):
            theta = np.array([f[metric] for f in full[k]])
            boot[:, k, j] = _nanmean(centred(block[:, :, j], theta)) + seed_term(theta, draws[runs])
    return boot


def _arm_record(arm: Arm, full: list[dict], boot: np.ndarray, level: float) -> dict:
    metrics = {}
    for metric in (*METRICS, *REPORTED):
        values = [f[metric] for f in full]
        finite = [v for v in values if not math.isnan(v)]
        record = {"mean": float(np.mean(finite)) if finite else math.nan, "seed_values": values,
                  "seed_sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else None}
        if metric in METRICS:
            lo, hi = percentile_interval(boot[:, METRICS.index(metric)], level)
            record.update(lo=lo, hi=hi, vs_erm=None, difference=None)
        metrics[metric] = record
    return {"name": arm.name, "method": arm.method, "config": arm.config, "seeds": arm.seeds,
            "trial_ids": arm.trial_ids, "search_trials": arm.search_trials, "correction": arm.correction,
            "metrics": metrics}


def _judge(out_arms: list[dict], boot: np.ndarray, reference: int, alpha: float) -> int:
    """Each arm x metric against the reference arm on the same resamples; Holm over all of them.
    Fills vs_erm and difference in place; returns the number of words (the Holm family)."""
    tests = []
    for k, arm in enumerate(out_arms):
        if k == reference:
            continue
        for j, metric in enumerate(METRICS):
            estimate = arm["metrics"][metric]["mean"] - out_arms[reference]["metrics"][metric]["mean"]
            d = boot[:, k, j] - boot[:, reference, j]
            d = d[~np.isnan(d)]
            if math.isnan(estimate) or d.size < 2:
                continue
            se = float(np.std(d, ddof=1))
            tests.append((arm["metrics"][metric], estimate, se, normal_p_value(estimate, se)))
    adjusted = holm([t[3] for t in tests])
    for (record, estimate, se, p), p_holm in zip(tests, adjusted):
        record["difference"] = {"estimate": estimate, "se": se, "p": p, "p_holm": float(p_holm)}
        record["vs_erm"] = verdict_word(estimate, float(p_holm), alpha)
    return len(tests)


def _search_seeds(sweep: Sweep) -> list[int]:
    """The seeds the search trials ran with (confirmation seeds never equal them)."""
    recorded = {int(s) for c in sweep.confirm_record.values() if isinstance(c, dict)
                for s in c.get("search_seeds") or ()}
    if recorded:
        return sorted(recorded)
    return sorted({int(t.config["seed"]) for t in sweep.trials if t.config.get("seed") is not None})


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN (NaN for an all-NaN row, e.g. no cell type to mix; no warning)."""
    count = (~np.isnan(values)).sum(axis=1)
    return np.where(count > 0, np.nansum(values, axis=1) / np.maximum(count, 1), np.nan)


def write_verdict(sweep_dir: str | Path, **kwargs) -> dict:
    """Compute the verdict and write SWEEP_DIR/verdict.json; returns it."""
    verdict = compute_verdict(sweep_dir, **kwargs)
    fileio.write_json(Path(sweep_dir) / sweep_files.VERDICT_FILE, verdict)
    return verdict


def read_verdict(sweep_dir: str | Path) -> dict | None:
    return fileio.read_json(Path(sweep_dir) / sweep_files.VERDICT_FILE)


def headline_text(verdict: dict) -> str:
    """One plain-text answer per arm, metric by metric, against ERM (what the report shows), under
    a caption that says what the intervals resample and what the words control."""
    arms = verdict.get("arms") or []
    if not arms:
        return f"Not answerable: {verdict.get('note', 'no verdict')}."
    erm = arms[0]
    trained = [a for a in arms if a["method"] in TRAINED]
    seeds = sorted({s for a in trained for s in a["seeds"]})
    counts = "/".join(map(str, sorted({len(a["seeds"]) for a in trained})))
    search = verdict.get("search_seeds") or []
    levels = "seeds and siRNAs within cell type"
    if verdict.get("resampled", {}).get("experiments_of"):
        levels += ", and experiments within " + ", ".join(verdict["resampled"]["experiments_of"])
    lines = [f"Judged on {len(verdict['experiments'])} held-out test experiments ({verdict['n_wells']} wells), "
             f"{counts} seed(s) a method (seeds {', '.join(map(str, seeds))}"
             + (f"; the search ran seed {', '.join(map(str, search))}" if search else "") + "); "
             f"{int(verdict['level'] * 100)}% bootstrap intervals over {levels}; words Holm-corrected over "
             f"{verdict.get('n_words', 0)} comparisons (family-wise error {verdict.get('alpha', ALPHA):g}); "
             "configurations chosen on validation experiments from "
             + ", ".join(f"{a['search_trials']} {a['name']}" for a in trained) + " search trials."]
    for arm in arms[1:]:
        parts = []
        for metric in verdict["metrics"]:
            m, e = arm["metrics"][metric], erm["metrics"][metric]
            parts.append(f"{metric} {m['vs_erm'] or 'not scored'} ({_fmt(m)} vs {_fmt(e)})")
        lines.append(f"{arm['name']} vs ERM: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def _fmt(m: dict) -> str:
    """mean [lo, hi], and the seeds' sd where there are several seeds."""
    if m["mean"] is None or (isinstance(m["mean"], float) and math.isnan(m["mean"])):
        return "n/a"
    text = f"{m['mean']:.3f}"
    if m.get("lo") is not None and not math.isnan(m["lo"]):
        text += f" [{m['lo']:.3f}, {m['hi']:.3f}]"
    if m.get("seed_sd") is not None:
        text += f" sd {m['seed_sd']:.3f}"
    return text
