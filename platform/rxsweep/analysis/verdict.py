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
                 features + LR: the hand-made-features baseline (one deterministic run);
                 NAME, NAME + Harmony: each `--embeddings NAME=FILE` (the user's own vectors through
                 the baseline's linear probe, rxsweep.training.embeddings_arm), and its Harmony-
                 corrected test well profiles (as ERM + Harmony)
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
the correction and the number of words it covers, which levels were resampled, and ``summary``:
the answer in one sentence, made of those words only (rxsweep.analysis.verdict_summary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rxsweep import fileio
from rxsweep.analysis.judging import LEVEL, METRICS, N_BOOT, REPORTED, arm_bootstrap, arm_metrics, judge, score_tables
from rxsweep.analysis.reference_rows import EMBEDDINGS_HARMONY_METHOD, EMBEDDINGS_METHOD
from rxsweep.analysis.sweep_folder import Sweep, load_sweep
from rxsweep.analysis.verdict_summary import summary_sentence
from rxsweep.metrics.embedding_scores import read_embeddings
from rxsweep.metrics.intervals import ALPHA, MIN_EXPERIMENTS_TO_RESAMPLE
from rxsweep.tuning import sweep_files

SPLIT = "heldout_test"
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


def arms_of(sweep: Sweep) -> list[Arm]:
    """The verdict's arms, from the confirmation runs, the features baseline and the user's
    embeddings arms (ERM first)."""
    confirm = sweep.confirm_record
    adaptive = [t.config.get("resampling") == "adaptive" for t in sweep.trials]
    ar_searched = len(set(adaptive)) > 1  # as rxsweep.tuning.confirm groups the trials
    groups = [AR_METHOD if ar and ar_searched else t.method for t, ar in zip(sweep.trials, adaptive)]
    search_counts = pd.Series(groups).value_counts().to_dict() if groups else {}
    by_id = {t.trial_id: t for t in sweep.confirm}  # confirmation runs only: no search trial is a seed's run
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
    for name, path in sweep.embeddings_arms.items():  # the user's own embeddings, judged as the features baseline
        tables = [_test_rows(read_embeddings(path))]
        arms += [Arm(name, EMBEDDINGS_METHOD + name, tables, seeds=[0]),
                 Arm(f"{name} + Harmony", EMBEDDINGS_HARMONY_METHOD + name, tables, seeds=[0], correction="harmony")]
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
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    arms = arms_of(sweep)
    erm = next((a for a in arms if a.method == "erm"), None)
    if erm is None:
        return _summarised({"split": SPLIT, "arms": [],
                            "note": "no completed ERM confirmation run: nothing to compare against"})
    tables = [(t, a.correction, s) for a in arms for t, s in zip(a.tables, a.seeds)]
    index = np.cumsum([0] + [len(a.tables) for a in arms])
    scores = score_tables(tables, n_boot, seed, workers)
    boot = arm_bootstrap(scores, [list(range(index[k], index[k + 1])) for k in range(len(arms))],
                         # ERM and its post-hoc corrections are the same runs: one seed draw
                         [tuple(a.trial_ids) or (a.method,) for a in arms], seed)
    records = [arm_metrics(scores.full[index[k]:index[k + 1]], boot[:, k], level) for k in range(len(arms))]
    n_words = judge(records, boot, reference=arms.index(erm), alpha=alpha)
    units = scores.units
    types = units.groupby("cell_type")["experiment"].nunique()
    verdict = {"split": SPLIT, "experiments": sorted(units["experiment"].unique()), "n_wells": len(units),
               "search_seeds": _search_seeds(sweep), "n_boot": n_boot, "level": level, "alpha": alpha,
               "correction": "holm", "n_words": n_words,
               "resampled": {"seeds": True, "perturbations": True,
                             "experiments_of": sorted(types.index[types >= MIN_EXPERIMENTS_TO_RESAMPLE])},
               "metrics": list(METRICS), "reported": list(REPORTED),
               "arms": [{"name": arm.name, "method": arm.method, "config": arm.config, "seeds": arm.seeds,
                         "trial_ids": arm.trial_ids, "search_trials": arm.search_trials, "correction": arm.correction,
                         "metrics": records[k]} for k, arm in enumerate(arms)]}
    return _summarised(verdict)


def _summarised(verdict: dict) -> dict:
    return {**verdict, "summary": summary_sentence(verdict)}


def _search_seeds(sweep: Sweep) -> list[int]:
    """The seeds the search trials ran with (confirmation seeds never equal them)."""
    recorded = {int(s) for c in sweep.confirm_record.values() if isinstance(c, dict)
                for s in c.get("search_seeds") or ()}
    if recorded:
        return sorted(recorded)
    return sorted({int(t.config["seed"]) for t in sweep.trials if t.config.get("seed") is not None})


def write_verdict(sweep_dir: str | Path, **kwargs) -> dict:
    """Compute the verdict and write SWEEP_DIR/verdict.json; returns it."""
    verdict = compute_verdict(sweep_dir, **kwargs)
    fileio.write_json(Path(sweep_dir) / sweep_files.VERDICT_FILE, verdict)
    return verdict


def read_verdict(sweep_dir: str | Path) -> dict | None:
    return fileio.read_json(Path(sweep_dir) / sweep_files.VERDICT_FILE)


def headline_text(verdict: dict) -> str:
    """The verdict's one-sentence summary (first line), then one plain-text answer per arm, metric by
    metric, against ERM (what the report shows), under a caption that says what the intervals
    resample and what the words control."""
    arms = verdict.get("arms") or []
    summary = verdict.get("summary") or summary_sentence(verdict)  # a verdict.json from before summary
    if not arms:
        return summary
    erm = arms[0]
    trained = [a for a in arms if a["method"] in TRAINED]
    seeds = sorted({s for a in trained for s in a["seeds"]})
    counts = "/".join(map(str, sorted({len(a["seeds"]) for a in trained})))
    search = verdict.get("search_seeds") or []
    levels = "seeds and siRNAs within cell type"
    if verdict.get("resampled", {}).get("experiments_of"):
        levels += ", and experiments within " + ", ".join(verdict["resampled"]["experiments_of"])
    lines = [summary,
             f"Judged on {len(verdict['experiments'])} held-out test experiments ({verdict['n_wells']} wells), "
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
