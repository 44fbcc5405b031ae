"""rxsweep.metrics topk, plate_constrained and replicate_retrieval against slow loop references
written from the formulas, known answers, shuffled-label controls and argument validation. CPU
only, a few seconds.

Tolerances: top-k accuracy, plate-constrained accuracies and plate groups exactly (counts; the
assignment reference enumerates every one-to-one assignment, so it does not share the Hungarian
solver); mAP and chance to 1e-12 absolute (the reference ranks pairs in Python with the same tie
rule; what differs is float summation order). Random-vector mAP must lie within
[chance - 0.01, chance + 0.03]: a random ranking's expected AP sits slightly above |R|/|C|.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from rxsweep.data.rxrx1_facts import WELL_TYPES as DATA_WELL_TYPES
from rxsweep.metrics.plate_constrained import WELL_TYPES, infer_plate_groups, plate_constrained_accuracy
from rxsweep.metrics.replicate_retrieval import replicate_retrieval, replicate_retrieval_map
from rxsweep.metrics.topk import topk_accuracy

# ----------------------------------------------------------------------------- slow references


def ref_topk(logits, labels, k):
    hits = 0
    for row, y in zip(np.asarray(logits, dtype=np.float64), labels):
        kth = sorted(row.tolist(), reverse=True)[k - 1]
        hits += row[y] >= kth
    return hits / len(labels)


def ref_groups(plates):
    """Union-find over treatment labels sharing a plate; groups ordered by smallest label."""
    parent = {}

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    treat = plates[plates["well_type"] == "treatment"]
    for _, labs in treat.groupby("plate_key")["label"]:
        labs = [int(v) for v in labs]
        for v in labs:
            parent.setdefault(v, v)
        for v in labs[1:]:
            parent[find(v)] = find(labs[0])
    comps = {}
    for v in parent:
        comps.setdefault(find(v), []).append(v)
    ordered = sorted(comps.values(), key=min)
    return {v: g for g, comp in enumerate(ordered) for v in comp}


def _lse(values):
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def _best_assignment(L, wells, choices):
    """Brute force: every injective map wells -> choices, max summed log-prob."""
    best, best_perm = -math.inf, None
    for perm in itertools.permutations(choices, len(wells)):
        s = sum(L[w][c] for w, c in zip(wells, perm))
        if best_perm is None or s > best:
            best, best_perm = s, perm
    return dict(zip(wells, best_perm))


def ref_plate(lp, labels, plate, well, wtype, groups, controls=None, negative_label=None):
    lp = np.asarray(lp, dtype=np.float64)
    n = len(labels)
    members = {}
    for lab, g in groups.items():
        members.setdefault(g, []).append(lab)
    pred, well_pred = [None] * n, [None] * n
    for p in dict.fromkeys(plate):
        site_rows = {}
        for i in range(n):
            if plate[i] == p:
                site_rows.setdefault(well[i], []).append(i)
        L = {w: [sum(lp[i][c] for i in rows) / len(rows) for c in range(lp.shape[1])]
             for w, rows in site_rows.items()}
        kind = {w: wtype[rows[0]] for w, rows in site_rows.items()}
        choice = {w: int(np.argmax(L[w])) for w in L}
        top1 = dict(choice)
        t = [w for w in L if kind[w] == "treatment"]
        if t:
            mass = {g: sum(_lse([L[w][c] for c in m]) for w in t) for g, m in members.items()}
            g_best = max(sorted(mass), key=lambda g: mass[g])
            choice.update(_best_assignment(L, t, sorted(members[g_best])))
        pc = [w for w in L if kind[w] == "positive_control"]
        if pc and controls is not None:
            choice.update(_best_assignment(L, pc, list(controls)))
        if negative_label is not None:
            choice.update({w: negative_label for w in L if kind[w] == "negative_control"})
        for w, rows in site_rows.items():
            for i in rows:
                pred[i], well_pred[i] = choice[w], top1[w]
    treat = [i for i in range(n) if wtype[i] == "treatment"]
    return {
        "plate_acc": sum(pred[i] == labels[i] for i in treat) / len(treat),
        "plate_acc_all": sum(pred[i] == labels[i] for i in range(n)) / n,
        "argmax_acc": sum(int(np.argmax(lp[i])) == labels[i] for i in treat) / len(treat),
        "well_acc": sum(well_pred[i] == labels[i] for i in treat) / len(treat),
    }


def ref_retrieval(X, labels, experiment, metric):
    X = np.asarray(X, dtype=np.float64)
    n = len(X)

    def sim(i, j):
        if metric == "euclidean":
            return -float(sum((a - b) ** 2 for a, b in zip(X[i], X[j])))
        ni, nj = math.sqrt(float(X[i] @ X[i])), math.sqrt(float(X[j] @ X[j]))
        return 0.0 if ni == 0 or nj == 0 else float(X[i] @ X[j]) / (ni * nj)

    aps, chances = [], []
    for i in range(n):
        cand = [j for j in range(n) if experiment[j] != experiment[i]]
        rel = {j: labels[j] == labels[i] for j in cand}
        n_rel = sum(rel.values())
        if n_rel == 0:
            continue
        ranked = sorted(cand, key=lambda j: (-sim(i, j), rel[j]))  # ties: irrelevant first
        hits, ap = 0, 0.0
        for r, j in enumerate(ranked, start=1):
            if rel[j]:
                hits += 1
                ap += hits / r
        aps.append(ap / n_rel)
        chances.append(n_rel / len(cand))
    return {"map": float(np.mean(aps)), "n_queries": len(aps), "n_skipped": n - len(aps),
            "chance": float(np.mean(chances))}


# ----------------------------------------------------------------------------- synthetic plates


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def make_plates(seed, n_groups=3, group_size=5, wells=4, n_plates=5, n_controls=3, signal=2.0,
                design_seed=0):
    """Per-site table of plates that each hold ``wells`` siRNAs of one group, 2 positive controls
    and 1 untreated well, 2 sites a well; well names are reused across plates with other well
    types (a well is a (plate, well) pair), rows shuffled. The
    groups depend on ``design_seed`` only, everything else on ``seed``."""
    rng = np.random.default_rng(seed)
    n_treat = n_groups * group_size
    perm = np.random.default_rng(design_seed).permutation(n_treat)  # groups not contiguous in id
    groups = {int(perm[i]): i // group_size for i in range(n_treat)}
    controls = list(range(n_treat, n_treat + n_controls))
    negative = n_treat + n_controls
    rows = []
    for p in range(n_plates):
        g = rng.integers(n_groups)
        labs = rng.choice(perm[g * group_size:(g + 1) * group_size], wells, replace=False)
        kinds = [("treatment", int(v)) for v in labs]
        kinds += [("positive_control", int(v)) for v in rng.choice(controls, 2, replace=False)]
        kinds += [("negative_control", negative)]
        for w, (kind, lab) in zip(rng.permutation(len(kinds)), kinds):  # positions shuffled a plate
            for site in (1, 2):
                rows.append({"plate_key": f"EXP-{p // 4:02d}/{p % 4 + 1}", "well_key": f"B{w + 2:02d}",
                             "well_type": kind, "label": lab, "site": site})
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    z = rng.normal(size=(len(df), negative + 1))
    z[np.arange(len(df)), df["label"]] += signal
    return df, log_softmax(z), groups, controls, negative


def run_plate(df, lp, groups, **kw):
    return plate_constrained_accuracy(lp, df["label"].to_numpy(), df["plate_key"].to_numpy(),
                                      df["well_key"].to_numpy(), df["well_type"].to_numpy(), groups, **kw)


# ----------------------------------------------------------------------------- topk_accuracy


@pytest.mark.parametrize("k", [1, 2, 5])
def test_topk_matches_reference_with_ties(k):
    rng = np.random.default_rng(k)
    logits = rng.integers(0, 4, size=(200, 7)).astype(np.float32)  # many ties
    labels = rng.integers(0, 7, size=200)
    assert topk_accuracy(logits, labels, k) == ref_topk(logits, labels, k)


def test_topk_known_answers():
    labels = np.arange(6) % 3
    perfect = np.eye(3)[labels] * 5.0
    assert topk_accuracy(perfect, labels) == 1.0
    assert topk_accuracy(perfect, (labels + 1) % 3, k=1) == 0.0
    assert topk_accuracy(perfect, (labels + 1) % 3, k=3) == 1.0
    assert topk_accuracy(np.zeros((4, 3), dtype=np.float16), [0, 1, 2, 0]) == 1.0  # all tied: hits
    shuffled = np.random.default_rng(0).permutation(np.arange(300) % 30)
    assert topk_accuracy(np.eye(30)[np.arange(300) % 30], shuffled) < 0.2


# ----------------------------------------------------------------------------- infer_plate_groups


def test_groups_recovered_from_four_group_design():
    rng = np.random.default_rng(1)
    perm = rng.permutation(24)
    true = [sorted(perm[g * 6:(g + 1) * 6].tolist()) for g in range(4)]
    rows = []
    for e in range(3):
        for p, g in enumerate(rng.permutation(4)):  # each experiment orders the groups its own way
            key = f"HUVEC-{e:02d}/{p + 1}"
            rows += [(key, int(v), "treatment") for v in rng.permutation(true[g])]
            rows += [(key, c, "positive_control") for c in (24, 25, 26)]  # on every plate
            rows += [(key, 27, "negative_control")]
    plates = pd.DataFrame(rows, columns=["plate_key", "label", "well_type"])
    got = infer_plate_groups(plates)
    expected_order = sorted(true, key=min)
    assert got == {v: g for g, members in enumerate(expected_order) for v in members}
    assert set(got.values()) == {0, 1, 2, 3}
    assert all(isinstance(k, int) and isinstance(v, int) for k, v in got.items())


@pytest.mark.parametrize("seed", range(4))
def test_groups_match_union_find_on_partial_plates(seed):
    """Plates holding random subsets of a group: components may split; must equal union-find."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(6):
        g = rng.integers(3)
        rows += [(p, int(v), "treatment") for v in rng.choice(np.arange(g * 8, g * 8 + 8), 3, replace=False)]
        rows += [(p, 99, "positive_control")]
    plates = pd.DataFrame(rows, columns=["plate_key", "label", "well_type"])
    assert infer_plate_groups(plates) == ref_groups(plates)


# ----------------------------------------------------------------------------- plate_constrained_accuracy


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_plate_matches_reference(seed, dtype):
    df, lp, groups, controls, negative = make_plates(seed)
    lp = lp.astype(dtype)
    for kw in ({}, {"controls": controls, "negative_label": negative}):
        got = run_plate(df, lp, groups, **kw)
        ref = ref_plate(lp, df["label"].tolist(), df["plate_key"].tolist(), df["well_key"].tolist(),
                        df["well_type"].tolist(), groups, **kw)
        assert {k: got[k] for k in ref} == ref
        assert (got["n_plates"], got["n_sites"], got["n_treatment_sites"]) == (5, len(df), 40)
    assert 0.0 < got["argmax_acc"] < 1.0  # the data is neither trivial nor hopeless


def test_plate_perfect_predictions_and_shuffled_labels():
    df, _, groups, controls, negative = make_plates(7)
    lp = log_softmax(np.eye(negative + 1)[df["label"]] * 10.0)
    got = run_plate(df, lp, groups, controls=controls, negative_label=negative)
    assert got["plate_acc"] == got["plate_acc_all"] == got["argmax_acc"] == 1.0
    shuffled = df.assign(label=np.random.default_rng(0).permutation(df["label"].to_numpy()))
    assert run_plate(shuffled, lp, groups)["plate_acc"] < 0.5


def _plate(label_rows, well_types=None):
    """One plate, 2 sites a well, log-probs from per-well logit rows."""
    n_w = len(label_rows)
    well_types = well_types or ["treatment"] * n_w
    z = np.repeat(np.asarray(label_rows, dtype=np.float64), 2, axis=0)
    return (log_softmax(z), np.repeat([f"W{w}" for w in range(n_w)], 2), np.repeat(well_types, 2))


def test_plate_one_to_one_recovers_collapsed_argmax():
    """Every well's argmax is siRNA 0, yet the one-to-one assignment recovers all wells."""
    groups = {v: 0 for v in range(5)} | {v: 1 for v in range(5, 10)}
    z = np.zeros((5, 10))
    z[:, 0] = 5.0
    z[0, 0] = 6.0
    z[np.arange(1, 5), np.arange(1, 5)] = 2.0
    lp, wells, types = _plate(z)
    labels = np.repeat(np.arange(5), 2)
    got = plate_constrained_accuracy(lp, labels, ["P1"] * 10, wells, types, groups)
    assert got["plate_acc"] == 1.0
    assert got["argmax_acc"] == pytest.approx(0.2)


def test_plate_group_chosen_by_mass_not_by_votes():
    """Two of three wells point at group 1 by argmax; mass over members says group 0."""
    groups = {v: 0 for v in range(3)} | {v: 1 for v in range(3, 6)}
    z = np.full((3, 6), -4.0)
    z[0, [0, 3]] = [3.9, 4.0]  # argmax in group 1, barely
    z[1, [1, 4]] = [3.9, 4.0]
    z[2, 2] = 8.0              # clearly group 0
    lp, wells, types = _plate(z)
    got = plate_constrained_accuracy(lp, np.repeat([0, 1, 2], 2), ["P"] * 6, wells, types, groups)
    assert (got["plate_acc"], got["argmax_acc"]) == (1.0, pytest.approx(1 / 3))


def test_plate_controls_and_unknown_sirna():
    groups = {0: 0, 1: 0}
    z = np.zeros((4, 6))
    z[0, 0] = z[1, 1] = 3.0  # treatment wells (labels 0, 1)
    z[2, 3] = 1.0            # positive-control wells: both prefer control 3
    z[3, 3] = 2.0
    lp, wells, _ = _plate(z)
    types = np.repeat(["treatment", "treatment", "positive_control", "positive_control"], 2)
    labels = np.repeat([0, 1, 4, 3], 2)
    base = plate_constrained_accuracy(lp, labels, ["P"] * 8, wells, types, groups, controls=[3, 4])
    assert base["plate_acc"] == base["plate_acc_all"] == 1.0
    assert plate_constrained_accuracy(lp, labels, ["P"] * 8, wells, types, groups)["plate_acc_all"] == 0.75
    unknown = labels.copy()
    unknown[:2] = 2  # an siRNA no training plate had: never predictable, counts as a miss
    z2 = z.copy()
    z2[0] = [0, 0, 9, 0, 0, 0]
    lp2, _, _ = _plate(z2)
    got = plate_constrained_accuracy(lp2, unknown, ["P"] * 8, wells, types, groups, controls=[3, 4])
    assert (got["plate_acc"], got["argmax_acc"]) == (0.5, 1.0)


def test_plate_groups_inferred_from_training_plates_end_to_end():
    train, _, groups, controls, negative = make_plates(3, n_plates=12, wells=5)
    held, lp, _, _, _ = make_plates(4, n_plates=8, wells=4, signal=10.0)  # other plates, same groups
    inferred = infer_plate_groups(train)
    assert set(inferred) == set(groups) and len(set(inferred.values())) == 3
    assert run_plate(held, lp, inferred, controls=controls, negative_label=negative)["plate_acc_all"] == 1.0


# ----------------------------------------------------------------------------- replicate retrieval


def _clusters(seed, n_labels=8, per=6, n_exp=3, d=5, noise=0.0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_labels), per)
    experiment = np.tile(np.arange(n_exp), n_labels * per // n_exp + 1)[: len(labels)]
    centres = rng.normal(size=(n_labels, d)) * 5
    return centres[labels] + noise * rng.normal(size=(len(labels), d)), labels, experiment


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("seed", range(3))
def test_retrieval_matches_reference(metric, seed):
    X, labels, experiment = _clusters(seed, noise=4.0)
    got, ref = replicate_retrieval(X, labels, experiment, metric=metric), ref_retrieval(X, labels, experiment, metric)
    assert got["n_queries"] == ref["n_queries"] and got["n_skipped"] == ref["n_skipped"]
    assert got["map"] == pytest.approx(ref["map"], abs=1e-12)
    assert got["chance"] == pytest.approx(ref["chance"], abs=1e-12)
    assert got["chance"] < got["map"] < 1.0


def test_retrieval_ties_broken_against_the_query():
    """Integer vectors (exact squared distances, many ties) and a fully collapsed embedding."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(40, 3)).astype(np.float64)
    labels, experiment = rng.integers(0, 4, 40), rng.integers(0, 3, 40)
    got = replicate_retrieval(X, labels, experiment, metric="euclidean")
    assert got["map"] == pytest.approx(ref_retrieval(X, labels, experiment, "euclidean")["map"], abs=1e-12)
    collapsed = np.ones((60, 4))
    labels, experiment = np.arange(60) % 5, np.arange(60) // 20  # sorted: any index order would show
    for metric in ("cosine", "euclidean"):
        got = replicate_retrieval(collapsed, labels, experiment, metric=metric)
        assert got["map"] == pytest.approx(ref_retrieval(collapsed, labels, experiment, metric)["map"], abs=1e-12)
        assert got["map"] <= got["chance"]
        order = rng.permutation(60)
        assert replicate_retrieval_map(collapsed[order], labels[order], experiment[order], metric) == pytest.approx(got["map"])


def test_retrieval_known_answers_and_shuffle():
    X, labels, experiment = _clusters(1, n_labels=20, per=9)
    for metric in ("cosine", "euclidean"):
        assert replicate_retrieval_map(X, labels, experiment, metric) == 1.0
    shuffled = np.random.default_rng(0).permutation(labels)
    res = replicate_retrieval(X, shuffled, experiment)
    assert res["map"] < res["chance"] + 0.1


def test_retrieval_random_vectors_near_chance():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 20, 600)
    res = replicate_retrieval(rng.normal(size=(600, 16)), labels, rng.integers(0, 3, 600))
    assert res["chance"] - 0.01 <= res["map"] <= res["chance"] + 0.03


def test_retrieval_excludes_same_experiment_and_counts_skipped():
    """Replicates identical within an experiment but unrelated across: same-experiment matches
    must not count. A label present in one experiment only has no relevant candidate."""
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(10), 4)
    experiment = np.tile([0, 0, 1, 1], 10)
    X = rng.normal(size=(20, 8))[labels * 2 + experiment]  # a vector per (label, experiment)
    res = replicate_retrieval(X, labels, experiment)
    assert res["map"] < 0.5 and res["n_skipped"] == 0
    labels[:2] = 99  # label 99 now only in experiment 0, label 0 only in experiment 1
    res = replicate_retrieval(X, labels, experiment)
    assert (res["n_queries"], res["n_skipped"]) == (36, 4)
    ref = ref_retrieval(X, labels, experiment, "cosine")
    assert (res["map"], res["chance"]) == (pytest.approx(ref["map"], abs=1e-12), pytest.approx(ref["chance"], abs=1e-12))
    assert replicate_retrieval_map(X, labels, experiment) == res["map"]


# ----------------------------------------------------------------------------- validation

_L = log_softmax(np.zeros((4, 3)))
_Y = np.array([0, 1, 2, 0])
_P = ["P"] * 4
_W = ["A", "A", "B", "C"]
_T = ["treatment"] * 4
_G = {0: 0, 1: 0, 2: 1}
_PLATES = pd.DataFrame({"plate_key": [1, 1], "label": [0, 1], "well_type": ["treatment"] * 2})
_X = np.random.default_rng(0).normal(size=(4, 2))
_E = [0, 0, 1, 1]

INVALID = [
    ("logits", lambda: topk_accuracy(np.zeros(3), [0])),
    ("logits", lambda: topk_accuracy(np.zeros((2, 3), dtype=int), [0, 1])),
    ("logits", lambda: topk_accuracy(np.full((2, 3), np.nan), [0, 1])),
    ("labels", lambda: topk_accuracy(_L, [0, 1])),
    ("labels", lambda: topk_accuracy(_L, [0.0, 1.0, 2.0, 0.0])),
    ("labels", lambda: topk_accuracy(_L, [0, 1, 3, 0])),
    ("labels", lambda: topk_accuracy(_L, [0, -1, 2, 0])),
    ("k", lambda: topk_accuracy(_L, _Y, 0)),
    ("k", lambda: topk_accuracy(_L, _Y, 4)),
    ("k", lambda: topk_accuracy(_L, _Y, 1.5)),
    ("plates", lambda: infer_plate_groups({"plate_key": [1]})),
    ("plates", lambda: infer_plate_groups(_PLATES.drop(columns="label"))),
    ("plates", lambda: infer_plate_groups(_PLATES.assign(well_type="positive_control"))),
    ("plates.well_type", lambda: infer_plate_groups(_PLATES.assign(well_type="Treatment"))),
    ("plates.label", lambda: infer_plate_groups(_PLATES.assign(label=[0.5, 1.0]))),
    ("log_probs", lambda: plate_constrained_accuracy(_L[0], _Y, _P, _W, _T, _G)),
    ("labels", lambda: plate_constrained_accuracy(_L, _Y[:3], _P, _W, _T, _G)),
    ("plate_key", lambda: plate_constrained_accuracy(_L, _Y, _P[:3], _W, _T, _G)),
    ("well_key", lambda: plate_constrained_accuracy(_L, _Y, _P, ["A", None, "B", "C"], _T, _G)),
    ("well_type", lambda: plate_constrained_accuracy(_L, _Y, _P, _W, ["x"] * 4, _G)),
    ("well_type", lambda: plate_constrained_accuracy(_L, _Y, _P, _W, ["positive_control"] * 4, _G)),
    ("well_type", lambda: plate_constrained_accuracy(
        _L, _Y, _P, _W, ["treatment", "positive_control", "treatment", "treatment"], _G)),
    ("groups", lambda: plate_constrained_accuracy(_L, _Y, _P, _W, _T, {})),
    ("groups", lambda: plate_constrained_accuracy(_L, _Y, _P, _W, _T, {5: 0})),
    ("controls", lambda: plate_constrained_accuracy(_L, _Y, _P, _W, _T, {0: 0}, controls=[0])),
    ("controls", lambda: plate_constrained_accuracy(_L, _Y, _P, _W, _T, {0: 0}, controls=[7])),
    ("negative_label", lambda: plate_constrained_accuracy(_L, _Y, _P, _W, _T, _G, negative_label=3)),
    ("X", lambda: replicate_retrieval(np.zeros(4), _Y, _E)),
    ("X", lambda: replicate_retrieval(np.full((4, 2), np.inf), _Y, _E)),
    ("labels", lambda: replicate_retrieval(_X, _Y[:3], _E)),
    ("experiment", lambda: replicate_retrieval(_X, _Y, [0, 0, 0, 0])),
    ("metric", lambda: replicate_retrieval(_X, _Y, _E, metric="manhattan")),
]


@pytest.mark.parametrize("name,call", INVALID, ids=[f"{i}-{n}" for i, (n, _) in enumerate(INVALID)])
def test_invalid_arguments_name_the_argument(name, call):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


def test_well_types_match_rxrx1_facts():
    # plate_constrained repeats the data floor's tuple (metrics may not import rxsweep.data).
    assert WELL_TYPES == DATA_WELL_TYPES
