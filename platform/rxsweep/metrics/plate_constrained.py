"""Plate-constrained accuracy: the RxRx1 "plate leak" post-processing, scored.

The post-processing of the Kaggle "Recursion Cellular Image Classification" (2019) top solutions
(structure published by Recursion in the competition forum, discussion 102905): every plate holds
one of 4 treatment groups, each siRNA of it once. With L_w = mean over the sites of well w of the
log-probabilities,
    g*  = argmax_g  sum_{treatment wells w}  logsumexp_{c in g} L_w[c]  (mass on g)
    pi* = argmax_{one-to-one pi: wells -> g*}  sum_w L_w[pi(w)]        (Hungarian)
Positive-control wells are assigned one-to-one among the controls the same way. This uses the
plate design (groups, well types) on top of the model, so report it apart from accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import logsumexp

from .checks import check_class_id, check_int_labels, check_keys, check_scores

__all__ = ["WELL_TYPES", "infer_plate_groups", "plate_constrained_accuracy"]

# The well types of the RxRx1 plate design. The same tuple as rxsweep.data.rxrx1_facts.WELL_TYPES,
# repeated here because metrics may not import the data floor; a test keeps the two equal.
WELL_TYPES = ("treatment", "positive_control", "negative_control")


def infer_plate_groups(plates: pd.DataFrame) -> dict[int, int]:
    """Treatment siRNA -> plate group, read off a site (or well) table of training plates.

    Groups are the connected components of "appear on the same plate" over treatment rows
    (controls sit on every plate and are ignored), numbered 0..G-1 in order of their smallest
    label. On RxRx1 every plate carries a whole group of 277, so one plate per group suffices
    and the result is the 4 groups; on data whose plates hold only part of a group, a group may
    come out split into several components (never merged, unless the design is not RxRx1's).

    Args:
        plates: DataFrame with columns ``plate_key`` (one physical plate, e.g. 'HUVEC-01/1'),
            ``label`` (integer siRNA id) and ``well_type`` (treatment | positive_control |
            negative_control); other columns are ignored.
    """
    if not isinstance(plates, pd.DataFrame):
        raise ValueError(f"plates must be a pandas DataFrame; got {type(plates).__name__}")
    missing = [c for c in ("plate_key", "label", "well_type") if c not in plates.columns]
    if missing:
        raise ValueError(f"plates lacks columns {missing}; needs plate_key, label, well_type")
    bad = sorted(set(plates["well_type"].astype(str)) - set(WELL_TYPES))
    if bad:
        raise ValueError(f"plates.well_type has unknown values {bad}; expected one of {list(WELL_TYPES)}")
    treat = plates[plates["well_type"] == "treatment"]
    if treat.empty:
        raise ValueError("plates has no rows with well_type 'treatment'")
    labels = check_int_labels(treat["label"].to_numpy(), len(treat), "plates.label")
    plate_codes = check_keys(treat["plate_key"].to_numpy(), len(treat), "plates.plate_key")
    uniq, label_codes = np.unique(labels, return_inverse=True)
    # Bipartite graph siRNA -- plate: two siRNAs are connected iff a chain of shared plates joins them.
    n_lab, n_nodes = len(uniq), len(uniq) + int(plate_codes.max()) + 1
    edges = coo_matrix((np.ones(len(labels)), (label_codes, n_lab + plate_codes)), shape=(n_nodes, n_nodes))
    _, comp = connected_components(edges, directed=False)
    comp = comp[:n_lab]
    # uniq is sorted, so a component's first occurrence is its smallest label.
    _, first = np.unique(comp, return_index=True)
    renumber = {int(c): g for g, c in enumerate(comp[np.sort(first)])}
    return {int(lab): renumber[int(c)] for lab, c in zip(uniq, comp)}


def _assign(scores: np.ndarray, choices: np.ndarray) -> np.ndarray:
    """One-to-one max-sum assignment of rows (wells) to ``choices`` (class ids) by their scores.

    Wells beyond the number of choices (not possible on RxRx1) get their best choice.
    """
    sub = scores[:, choices]
    finite = np.isfinite(sub)
    # -inf (float16 underflow) is infeasible for the solver: floor it just below the finite minimum.
    floor = (sub[finite].min() if finite.any() else 0.0) - 1.0
    sub = np.where(finite, sub, floor)
    pred = choices[np.argmax(sub, axis=1)]
    rows, cols = linear_sum_assignment(sub, maximize=True)
    pred[rows] = choices[cols]
    return pred


def plate_constrained_accuracy(
    log_probs: np.ndarray, labels: np.ndarray, plate_key: np.ndarray, well_key: np.ndarray,
    well_type: np.ndarray, groups: dict[int, int], controls: list[int] | None = None,
    negative_label: int | None = None,
) -> dict:
    """Accuracy after restricting each plate to one siRNA group, one siRNA a well (module doc).

    Per plate: (a) average log-probs over each well's sites; (b) choose the group with the most
    probability mass summed over the plate's treatment wells; (c) assign treatment wells to that
    group's siRNAs one-to-one (Hungarian, max summed log-prob); (d) positive-control wells
    one-to-one among ``controls`` if given, else plain argmax; negative-control wells get
    ``negative_label`` if given, else plain argmax. Every site gets its well's prediction.
    ``labels`` are used only for scoring, never for choosing; a treatment site whose label is not
    in ``groups`` (an siRNA unseen in training plates) can never be predicted and counts as a miss.

    Args:
        log_probs: (n, C) per-site log-softmax outputs (float16/32/64; -inf allowed).
        labels: (n,) true class ids (any integers).
        plate_key: (n,) plate of each site, unique across experiments (e.g. 'HUVEC-19/2').
        well_key: (n,) well of each site; wells are (plate_key, well_key) pairs, so 'B02' works.
        well_type: (n,) treatment | positive_control | negative_control, one per well.
        groups: {treatment class id: group}, e.g. from ``infer_plate_groups``; ids in [0, C).
        controls: distinct positive-control class ids in [0, C), disjoint from ``groups``.
        negative_label: class id of the untreated well, in [0, C).

    Returns:
        {"plate_acc": over treatment sites, "plate_acc_all": over all sites, "argmax_acc": plain
        site-level top-1 over treatment sites, "well_acc": top-1 of well-averaged log-probs over
        treatment sites (separates site averaging from the plate constraint), "n_plates",
        "n_sites", "n_treatment_sites"}.
    """
    lp = check_scores(log_probs, "log_probs")
    n, n_classes = lp.shape
    y = check_int_labels(labels, n, "labels")
    plate = check_keys(plate_key, n, "plate_key")
    wkey = check_keys(well_key, n, "well_key")
    well = plate * (int(wkey.max()) + 1) + wkey  # a well is a (plate, well_key) pair
    wtype = np.asarray(well_type)
    if wtype.ndim != 1 or wtype.shape[0] != n:
        raise ValueError(f"well_type must be 1-D of length {n}; got shape {wtype.shape}")
    bad = sorted(set(wtype.astype(str)) - set(WELL_TYPES))
    if bad:
        raise ValueError(f"well_type has unknown values {bad}; expected one of {list(WELL_TYPES)}")
    treat = wtype == "treatment"
    if not treat.any():
        raise ValueError("well_type has no 'treatment' sites to score")
    if len(np.unique(well * 3 + pd.factorize(wtype)[0])) != len(np.unique(well)):
        raise ValueError("well_type differs between sites of one well (plate_key, well_key)")
    if not isinstance(groups, dict) or not groups:
        raise ValueError("groups must be a non-empty dict {treatment class id: group}")
    for lab in groups:
        check_class_id(lab, n_classes, "groups keys")
    members = [np.array(sorted(lab for lab, g in groups.items() if g == key), dtype=np.int64)
               for key in sorted(set(groups.values()))]
    if controls is not None:
        ctrl = np.array([check_class_id(c, n_classes, "controls") for c in controls], dtype=np.int64)
        if ctrl.size == 0 or len(np.unique(ctrl)) != ctrl.size or set(ctrl.tolist()) & set(groups):
            raise ValueError("controls must be a non-empty list of distinct class ids not in groups")
    if negative_label is not None:
        negative_label = check_class_id(negative_label, n_classes, "negative_label")

    pred = np.empty(n, dtype=np.int64)
    well_top1 = np.empty(n, dtype=np.int64)
    order = np.lexsort((well, plate))
    plate_starts = np.flatnonzero(np.r_[True, np.diff(plate[order]) != 0])
    for rows in np.split(order, plate_starts[1:]):
        starts = np.flatnonzero(np.r_[True, np.diff(well[rows]) != 0])
        counts = np.diff(np.r_[starts, len(rows)])
        L = np.add.reduceat(lp[rows].astype(np.float64), starts, axis=0) / counts[:, None]
        wpred = np.argmax(L, axis=1)
        kind = wtype[rows][starts]
        t = np.flatnonzero(kind == "treatment")
        if t.size:
            mass = [logsumexp(L[np.ix_(t, m)], axis=1).sum() for m in members]
            wpred[t] = _assign(L[t], members[int(np.argmax(mass))])
        p = np.flatnonzero(kind == "positive_control")
        if p.size and controls is not None:
            wpred[p] = _assign(L[p], ctrl)
        if negative_label is not None:
            wpred[kind == "negative_control"] = negative_label
        pred[rows] = np.repeat(wpred, counts)
        well_top1[rows] = np.repeat(np.argmax(L, axis=1), counts)

    hit = pred == y
    return {"plate_acc": float(hit[treat].mean()), "plate_acc_all": float(hit.mean()),
            "argmax_acc": float(np.mean(np.argmax(lp[treat], axis=1) == y[treat])),
            "well_acc": float(np.mean(well_top1[treat] == y[treat])),
            "n_plates": int(plate.max()) + 1, "n_sites": int(n), "n_treatment_sites": int(treat.sum())}
