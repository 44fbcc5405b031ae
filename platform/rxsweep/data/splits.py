"""Splits by experiment: the model is judged on batches it never saw.

    train         training experiments, minus the training-domain holdout
    val           training-domain holdout: whole treatment wells of the training experiments (both
                  sites of a well go to the same side, so a site's twin never leaks into
                  validation). Controls are never held out: every training plate keeps all of
                  its control wells, so a domain loss on the controls (domain_sites: controls)
                  sees the same classes in the same numbers on every plate and experiment
    heldout_val   held-out validation experiments: what a sweep optimises
    heldout_test  held-out test experiments: reported, never used to choose anything
    unlabeled     every site of an experiment whose labels the layout hides, even partly (Kaggle
                  test.csv hides the treatments; test_controls.csv still labels the controls).
                  Such a site is in no split a loss or a score sees: kept in train, each of these
                  experiments would be a domain made only of control wells, and a domain head
                  could read "control or treatment" off the domain.

Held-out experiments are explicit lists, or N per cell type drawn with a seed from the labelled
experiments, always leaving each cell type at least one training experiment; or, for data from
several laboratories (LoadData's Metadata_Source), every experiment of N whole sources
(n_val_sources, n_test_sources), always leaving one source to train on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "heldout_val", "heldout_test", "unlabeled")


@dataclass(frozen=True)
class SplitSpec:
    val_experiments: tuple[str, ...] = ()  # explicit held-out validation experiments
    test_experiments: tuple[str, ...] = ()  # explicit held-out test experiments
    n_val_per_cell_type: int = 1  # used when val_experiments is empty
    n_test_per_cell_type: int = 1  # used when test_experiments is empty
    holdout_fraction: float = 0.1  # share of training wells kept for training-domain validation
    seed: int = 0
    n_val_sources: int = 0  # > 0: hold out this many whole sources for validation instead
    n_test_sources: int = 0  # > 0: hold out this many whole sources for test instead


def assign_splits(index: pd.DataFrame, spec: SplitSpec) -> pd.Series:
    """Split name for each site of `index` (needs experiment, cell_type, well_id, well_type, label;
    source when sources are held out)."""
    if not 0.0 <= spec.holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {spec.holdout_fraction}")
    labelled = index.groupby("experiment")["label"].min().ge(0)
    cell_type = index.groupby("experiment")["cell_type"].first()
    rng = np.random.default_rng(spec.seed)
    # When both are drawn, the val draw must leave room for the test draw and one training experiment.
    if spec.n_val_sources or spec.n_test_sources:
        source = index.groupby("experiment")["source"].first()
        val, test = _choose_sources(spec, labelled, source, cell_type, rng)
    else:
        reserve = 0 if spec.test_experiments else spec.n_test_per_cell_type
        val = _choose(spec.val_experiments, spec.n_val_per_cell_type, labelled, cell_type, rng, "val", set(), reserve)
        test = _choose(spec.test_experiments, spec.n_test_per_cell_type, labelled, cell_type, rng, "test", set(val), 0)
    overlap = set(val) & set(test)
    if overlap:
        raise ValueError(f"experiments {sorted(overlap)} are in both val_experiments and test_experiments")
    split = pd.Series("train", index=index.index, dtype=object)
    split[index["experiment"].isin(val)] = "heldout_val"
    split[index["experiment"].isin(test)] = "heldout_test"
    split[~index["experiment"].map(labelled).astype(bool)] = "unlabeled"
    training = split.eq("train")
    if not training.any():
        raise ValueError("no labelled training experiment is left after the held-out experiments")
    wells = np.array(sorted(index.loc[training & index["well_type"].eq("treatment"), "well_id"].unique()))
    n_holdout = int(round(spec.holdout_fraction * len(wells)))
    holdout = set(rng.permutation(wells)[:n_holdout])
    split[training & index["well_id"].isin(holdout)] = "val"
    return split


def _choose_sources(spec: SplitSpec, labelled: pd.Series, source: pd.Series, cell_type: pd.Series,
                    rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Held-out validation and test experiments when whole sources are held out: every labelled
    experiment of n_val_sources, and of n_test_sources other sources, drawn with the split's seed.
    A side without sources (n = 0) takes its explicit list or its draw per cell type from the rest.
    At least one source is left to train on."""
    if spec.n_val_sources < 0 or spec.n_test_sources < 0:
        raise ValueError("n_val_sources and n_test_sources must be >= 0")
    pool = sorted(source[labelled].unique())
    if len(pool) - spec.n_val_sources - spec.n_test_sources < 1:
        raise ValueError(f"the data has {len(pool)} source(s) with labels ({pool}): holding out "
                         f"{spec.n_val_sources} for validation and {spec.n_test_sources} for test would leave "
                         "none to train on; lower n_val_sources / n_test_sources")
    drawn = list(rng.permutation(pool))
    by_source = {}
    for what, n in (("val", spec.n_val_sources), ("test", spec.n_test_sources)):
        chosen = {drawn.pop(0) for _ in range(n)}
        by_source[what] = sorted(e for e in source.index[source.isin(chosen)] if labelled[e])
    taken = set(by_source["val"]) | set(by_source["test"])
    val = by_source["val"] or _choose(spec.val_experiments, spec.n_val_per_cell_type, labelled, cell_type, rng,
                                      "val", taken, 0)
    test = by_source["test"] or _choose(spec.test_experiments, spec.n_test_per_cell_type, labelled, cell_type,
                                        rng, "test", taken | set(val), 0)
    return val, test


def _choose(explicit: tuple[str, ...], per_cell_type: int, labelled: pd.Series, cell_type: pd.Series,
            rng: np.random.Generator, what: str, taken: set[str], reserve: int) -> list[str]:
    if explicit:
        unknown = sorted(set(explicit) - set(labelled.index))
        if unknown:
            raise ValueError(f"{what}_experiments {unknown} are not in the data; known: {sorted(labelled.index)}")
        unlabelled = sorted(e for e in explicit if not labelled[e])
        if unlabelled:
            raise ValueError(f"{what}_experiments {unlabelled} have no labels (Kaggle test set); choose labelled ones")
        return list(explicit)
    if per_cell_type < 0:
        raise ValueError(f"n_{what}_per_cell_type must be >= 0, got {per_cell_type}")
    chosen = []
    for kind in sorted(cell_type.unique()):
        pool = sorted(e for e in cell_type.index[cell_type.eq(kind)] if labelled[e] and e not in taken)
        if not pool:  # a cell type seen only in unlabelled experiments: nothing to hold out
            continue
        if per_cell_type and len(pool) - per_cell_type - reserve < 1:
            also = f" and {reserve} for test" if reserve else ""
            raise ValueError(
                f"cell type {kind} has {len(pool)} labelled experiment(s) left: holding out "
                f"{per_cell_type} for {what}{also} would leave none to train on; lower the "
                f"n_*_per_cell_type settings or list val_experiments/test_experiments explicitly"
            )
        chosen += list(rng.choice(pool, size=per_cell_type, replace=False)) if per_cell_type else []
    return sorted(chosen)


def held_out_words(table: pd.DataFrame, split: str) -> str:
    """How a sweep names what ``split`` holds (table: sites with experiment, source and split):
    'the held-out validation experiments', or, when it holds whole sources that no other split
    touches, 'the held-out validation sources (S1, S2)'."""
    side = "validation" if split == "heldout_val" else "test"
    inside = table["split"] == split
    sources = sorted(table.loc[inside, "source"].unique()) if "source" in table else []
    if sources and not table.loc[~inside, "source"].isin(sources).any():
        return f"the held-out {side} source{'s' if len(sources) > 1 else ''} ({', '.join(sources)})"
    return f"the held-out {side} experiments"

