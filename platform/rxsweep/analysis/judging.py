"""The verdict's engine: every table scored on the same bootstrap resamples, arms built from
tables, and the words (rxsweep.metrics.intervals says what each level of the resampling carries).

    score_tables    each table (one seed's test-split site rows, maybe a post-hoc correction) on
                    all wells (full) and on n_boot resamples of siRNAs (and experiments) within
                    cell type (raw [resample, table, metric]); the costly part, on processes
    arm_bootstrap   an arm = some tables (its seeds): [resample, arm, metric] = the mean over its
                    seeds of their centred values + its seed level (arms that are the same runs
                    share one seed draw)
    arm_metrics     mean over seeds, each seed's value and their sd, 95 % percentile interval
    judge           each arm x metric against a reference arm on the same resamples: normal test
                    on the bootstrap SE, Holm over all of them, the word

rxsweep.analysis.verdict runs them on a sweep's confirmation runs; bench/verdict_calibration.py on
random splits of one configuration's seeds (its error rates).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from rxsweep.metrics.intervals import (ALPHA, UnitResampler, centred, holm, normal_p_value, percentile_interval,
                                       seed_term, verdict_word)
from rxsweep.metrics.mixing import COMPOSITE_KEYS, batch_mixing_scores
from rxsweep.metrics.posthoc import corrected_profiles
from rxsweep.metrics.replicate_retrieval import replicate_map, replicate_retrieval
from rxsweep.metrics.well_profiles import mixing_parameters, stack, well_profiles

#: The metrics judged against the reference (bootstrapped, one word each).
METRICS = ("heldout_test_acc", "mixing", "replicate_map")
#: Reported beside them with their seeds, not judged: retrieved_fraction is the share of siRNAs
#: whose own permutation test (copairs) retrieves them; it is its own inference.
REPORTED = ("retrieved_fraction",)
#: Resamples, for every metric: 5 beyond each 95 % end, 10 outside the interval; the words rest on
#: the resamples' standard deviation. A resample's mixing is scored on well profiles (~35 ms a
#: table on the tiny preset, most of it the probe's 20 fits).
N_BOOT = 200
LEVEL = 0.95


class ScoredTable:
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


def _resampled(scored: list[ScoredTable], resamples: list[np.ndarray]) -> np.ndarray:
    """[resample, table, metric] raw values of METRICS. Runs in a worker process a core: torch
    on one thread, so the probe's folds run in turn (on threads they waited on each other)."""
    import torch

    torch.set_num_threads(1)
    return np.array([[s.resampled(rows) for s in scored] for rows in resamples], dtype=np.float64).reshape(
        len(resamples), len(scored), len(METRICS))


@dataclass
class TableScores:
    """score_tables' answer: ``full`` [table] -> metric -> value on all wells; ``raw``
    [resample, table, metric] of METRICS; ``units`` the wells (experiment, cell type, label)."""
    full: list[dict]
    raw: np.ndarray
    units: pd.DataFrame


def score_tables(tables: list[tuple[pd.DataFrame, str | None, int]], n_boot: int = N_BOOT, seed: int = 0,
                 workers: int | None = None) -> TableScores:
    """Each (table, correction, seed) on all wells and on n_boot resamples (module doc); the first
    table's wells are the units every table must share. ``workers``: processes (default: the
    machine's CPUs, at most 8)."""
    workers = workers or min(8, os.cpu_count() or 1)
    profiles = well_profiles(tables[0][0])
    units = profiles[["well_id", "experiment", "cell_type", "label"]]
    try:
        mixing = mixing_parameters(profiles)
    except ValueError:
        mixing = None
    ids = units["well_id"].to_numpy()
    scored = [ScoredTable(table, correction, s, ids, mixing) for table, correction, s in tables]
    full = [t.full() for t in scored]
    rng = np.random.default_rng(seed)
    resampler = UnitResampler(units)
    resamples = [resampler.draw(rng) for _ in range(n_boot)]
    # on processes: a resample's mixing is a kNN and a cross-validated probe per table
    chunks = np.array_split(np.arange(n_boot), min(n_boot, workers))
    raw = np.concatenate(Parallel(n_jobs=len(chunks))(
        delayed(_resampled)(scored, [resamples[i] for i in chunk]) for chunk in chunks))
    return TableScores(full, raw, units)


def arm_bootstrap(scores: TableScores, arms: list[list[int]], runs: list[tuple], seed: int = 0) -> np.ndarray:
    """[resample, arm, metric] of METRICS for arms given as table indices (their seeds); arms
    with equal ``runs`` keys are the same training runs and share one seed draw."""
    rng = np.random.default_rng([seed, 1])
    n_boot = scores.raw.shape[0]
    draws = {}
    boot = np.full((n_boot, len(arms), len(METRICS)), np.nan)
    for k, (tables, key) in enumerate(zip(arms, runs)):
        if key not in draws:
            draws[key] = rng.integers(0, len(tables), size=(n_boot, len(tables)))
        for j, metric in enumerate(METRICS):
            theta = np.array([scores.full[t][metric] for t in tables])
            boot[:, k, j] = _nanmean(centred(scores.raw[:, tables, j], theta)) + seed_term(theta, draws[key])
    return boot


def arm_metrics(full: list[dict], boot: np.ndarray, level: float = LEVEL) -> dict:
    """metric -> {mean over seeds, seed_values, seed_sd (ddof 1), and for METRICS lo, hi (from
    ``boot`` [resample, metric]) and vs_erm, difference (None until judged)}."""
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
    return metrics


def judge(records: list[dict], boot: np.ndarray, reference: int, alpha: float = ALPHA) -> int:
    """Each arm's METRICS (``records`` [arm] = arm_metrics) against the reference arm's on the
    same resamples; Holm over all of them. Fills vs_erm and difference in place; returns the
    number of words (the Holm family)."""
    tests = []
    for k, metrics in enumerate(records):
        if k == reference:
            continue
        for j, metric in enumerate(METRICS):
            estimate = metrics[metric]["mean"] - records[reference][metric]["mean"]
            d = boot[:, k, j] - boot[:, reference, j]
            d = d[~np.isnan(d)]
            if math.isnan(estimate) or d.size < 2:
                continue
            se = float(np.std(d, ddof=1))
            tests.append((metrics[metric], estimate, se, normal_p_value(estimate, se)))
    adjusted = holm([t[3] for t in tests])
    for (record, estimate, se, p), p_holm in zip(tests, adjusted):
        record["difference"] = {"estimate": estimate, "se": se, "p": p, "p_holm": float(p_holm)}
        record["vs_erm"] = verdict_word(estimate, float(p_holm), alpha)
    return len(tests)


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN (NaN for an all-NaN row, e.g. no cell type to mix; no warning)."""
    count = (~np.isnan(values)).sum(axis=1)
    return np.where(count > 0, np.nansum(values, axis=1) / np.maximum(count, 1), np.nan)
