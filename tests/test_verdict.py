"""Ranking, Pareto front, the post-hoc and features rows, and the verdict, on a small sweep folder
built here by hand, so every expected value is known without running the code under test.

The world: one cell type; validation experiments V1, V2, test experiments T1, T2, training R1.
An experiment is one plate of 16 wells (12 treatments, labels 0-11; 3 positive controls 12-14;
the untreated well 15), 2 sites a well. A site's embedding = its label's vector + its
experiment's shift (the batch effect, the same for every well of an experiment) + tiny noise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from rxsweep import fileio
from rxsweep.analysis.ranking import rank_sweep
from rxsweep.analysis.sweep_folder import load_sweep
from rxsweep.analysis.verdict import compute_verdict, headline_text, write_verdict
from rxsweep.training import run_files
from rxsweep.training.embeddings import embeddings_table, write_embeddings
from rxsweep.training.run_files import write_splits
from rxsweep.tuning import sweep_files

DIM, N_CLASSES = 8, 16
EXPERIMENTS = {"V1": "heldout_val", "V2": "heldout_val", "T1": "heldout_test", "T2": "heldout_test", "R1": "train"}
RNG = np.random.default_rng(0)
LABEL_VECTORS = RNG.normal(size=(N_CLASSES, DIM))
SHIFTS = {e: RNG.normal(scale=5.0, size=DIM) for e in EXPERIMENTS}


def _sites() -> pd.DataFrame:
    rows = []
    for experiment, split in EXPERIMENTS.items():
        for label in range(N_CLASSES):
            well = f"B{label + 2:02d}"
            kind = "treatment" if label < 12 else ("positive_control" if label < 15 else "negative_control")
            for site in (1, 2):
                rows.append({"site_id": f"{experiment}_1_{well}_{site}", "well_id": f"{experiment}_1_{well}",
                             "experiment": experiment, "plate": 1, "well": well, "cell_type": "HUVEC",
                             "well_type": kind, "split": split, "label": label})
    return pd.DataFrame(rows)


SITES = _sites()


def _table(correct_below: int, shifted: bool = True, seed: int = 0):
    """Held-out embeddings: predictions right for labels < correct_below (wrong by +1 otherwise)."""
    rng = np.random.default_rng(seed)
    parts = {}
    for split in ("heldout_val", "heldout_test"):
        rows = SITES[SITES["split"] == split]
        emb = LABEL_VECTORS[rows["label"]] + (np.stack([SHIFTS[e] for e in rows["experiment"]]) if shifted else 0)
        emb = emb + rng.normal(scale=1e-3, size=emb.shape)
        pred = np.where(rows["label"] < correct_below, rows["label"], (rows["label"] + 1) % N_CLASSES)
        log_probs = np.full((len(rows), N_CLASSES), -10.0)
        log_probs[np.arange(len(rows)), pred] = 0.0
        parts[split] = [{"site_index": rows.index.to_numpy(), "label": rows["label"].to_numpy(),
                         "prediction": pred, "embedding": emb.astype(np.float32), "log_probs": log_probs}]
    return embeddings_table(parts, SITES, DIM, N_CLASSES)


def _trial(folder, trial_id, params, status, history, table, epochs=2):
    run = folder / sweep_files.TRIALS_DIR / trial_id
    (run / run_files.checkpoint_dir_name(epochs)).mkdir(parents=True)
    fileio.write_json(run / sweep_files.PARAMS_FILE, params)
    fileio.write_json(run / sweep_files.STATUS_FILE, {"trial_id": trial_id, "status": status})
    (run / run_files.CONFIG_FILE).write_text(json.dumps({**params, "epochs": epochs}))
    run_files.write_history(run / run_files.METRICS_FILE, history)
    write_splits(run, SITES)
    write_embeddings(table, run / run_files.checkpoint_dir_name(epochs) / run_files.EMBEDDINGS_FILE)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("constructed") / "sweep"
    folder.mkdir()
    fileio.write_json(folder / sweep_files.SWEEP_FILE, {"format": sweep_files.FORMAT, "name": "constructed",
                                                        "params": ["domain_label", "lr"], "finished": True})
    erm, dann = {"domain_label": "none", "lr": 0.01}, {"domain_label": "experiment", "lr": 0.002}
    last = {"epoch": 2, "heldout_test_acc": 0.1}
    # the search: ERM best on accuracy, DANN-1 best on mixing, DANN-2 dominated by DANN-1
    _trial(folder, "erm1", erm, "completed", [{**last, "heldout_val_acc": 0.5, "mixing": 0.2}], _table(6))
    _trial(folder, "dann1", dann, "completed", [{**last, "heldout_val_acc": 0.4, "mixing": 0.6}], _table(6))
    _trial(folder, "dann2", {**dann, "lr": 0.003}, "stopped", [{**last, "heldout_val_acc": 0.3, "mixing": 0.5}],
           _table(6), epochs=1)
    # the confirmation runs: ERM right on labels < 6 (seed 0) and < 3 (seed 1); DANN right on every
    # label with ERM's own embeddings (same mixing, same mAP)
    confirm = folder / sweep_files.CONFIRM_DIR
    fileio.write_json(confirm / sweep_files.CONFIRM_FILE, {
        "erm": {"source_trial": "erm1", "params": erm, "seeds": [0, 1], "trial_ids": ["c_erm0", "c_erm1"]},
        "dann": {"source_trial": "dann1", "params": dann, "seeds": [0, 1], "trial_ids": ["c_dann0", "c_dann1"]}})
    for seed, correct in ((0, 6), (1, 3)):
        _trial(confirm, f"c_erm{seed}", {**erm, "seed": seed}, "completed", [last], _table(correct, seed=seed))
        _trial(confirm, f"c_dann{seed}", {**dann, "seed": seed}, "completed", [last], _table(12, seed=seed))
    # the features baseline: never right
    baseline = folder / sweep_files.BASELINE_EMBEDDINGS
    baseline.parent.mkdir(parents=True)
    write_embeddings(_table(0, seed=5), baseline)
    return folder


def test_ranking_ranks_trials_by_hand_and_lists_the_reference_rows_after(sweep_dir):
    table = rank_sweep(sweep_dir).set_index("trial_id")
    # acc ranks erm1 1, dann1 2, dann2 3; mixing ranks dann1 1, dann2 2, erm1 3
    assert table.loc["dann1", "rank"] == 1.5 and table.loc["erm1", "rank"] == 2.0 and table.loc["dann2", "rank"] == 2.5
    assert table.loc["erm1", "pareto"] and table.loc["dann1", "pareto"] and not table.loc["dann2", "pareto"]
    assert list(table.index[:3]) == ["dann1", "erm1", "dann2"]
    reference = table.iloc[3:]
    assert list(reference.index) == ["erm1 + sphering", "erm1 + Harmony", "features + LR"]
    assert reference["rank"].isna().all() and not reference["pareto"].any()
    # a post-hoc correction does not change predictions: the trial's accuracy is kept
    assert reference.loc["erm1 + sphering", "heldout_val_acc"] == 0.5
    # from the embeddings: right on labels < 6 of 16, controls (12-15) included
    assert table.loc["erm1", "heldout_val_acc_all"] == pytest.approx(6 / 16)
    # every experiment's shift is the same for its controls: sphering on controls removes it, and
    # each well's nearest well in the other experiment is its replicate (mAP 1, by construction)
    assert reference.loc["erm1 + sphering", "heldout_val_replicate_map"] == pytest.approx(1.0)
    assert reference.loc["erm1 + sphering", "mixing"] > table.loc["erm1", "mixing"]
    assert reference.loc["features + LR", "heldout_val_acc"] == 0.0


def test_verdict_by_hand(sweep_dir):
    verdict = compute_verdict(sweep_dir, n_boot=60)
    arms = {a["name"]: a for a in verdict["arms"]}
    assert list(arms) == ["ERM", "ERM + sphering", "ERM + Harmony", "DANN", "features + LR"]
    assert verdict["experiments"] == ["T1", "T2"] and verdict["n_wells"] == 32
    erm, dann = arms["ERM"]["metrics"], arms["DANN"]["metrics"]
    # treatment accuracy: ERM (6/12 + 3/12) / 2 over its seeds, DANN 1 on every resample
    assert erm["heldout_test_acc"]["mean"] == pytest.approx(0.375)
    assert erm["heldout_test_acc"]["lo"] <= 0.375 <= erm["heldout_test_acc"]["hi"]
    assert {k: dann["heldout_test_acc"][k] for k in ("mean", "lo", "hi", "vs_erm", "seed_values", "seed_sd")} == \
        {"mean": 1.0, "lo": 1.0, "hi": 1.0, "vs_erm": "better", "seed_values": [1.0, 1.0], "seed_sd": 0.0}
    assert erm["heldout_test_acc"]["seed_values"] == [0.5, 0.25]
    # DANN's embeddings are ERM's: mixing and mAP differ by exactly 0 on every resample
    for metric in ("mixing", "replicate_map"):
        assert dann[metric]["mean"] == pytest.approx(erm[metric]["mean"])
        assert dann[metric]["vs_erm"] == "no detectable difference"
    # features + LR is right on nothing: 0.375 below ERM, whose two seeds differ by 0.25 and whose
    # accuracy depends on which siRNAs a resample draws (right on labels < 6 or < 3 of 12): a raw
    # p below 0.05 that Holm's correction over the verdict's words does not keep
    features = arms["features + LR"]["metrics"]["heldout_test_acc"]
    assert features["difference"]["p"] < 0.05 < features["difference"]["p_holm"]
    assert features["vs_erm"] == "no detectable difference"
    tests = [m["difference"] for a in verdict["arms"][1:] for m in a["metrics"].values() if m.get("difference")]
    assert len(tests) == verdict["n_words"] == 12  # 4 arms x 3 metrics
    np.testing.assert_allclose([t["p_holm"] for t in tests], multipletests([t["p"] for t in tests], method="holm")[1])
    assert arms["ERM + sphering"]["metrics"]["replicate_map"]["mean"] == pytest.approx(1.0)
    assert arms["ERM + sphering"]["metrics"]["heldout_test_acc"]["vs_erm"] == "no detectable difference"
    assert arms["ERM"]["seeds"] == [0, 1] and arms["ERM"]["trial_ids"] == ["c_erm0", "c_erm1"]
    assert arms["DANN"]["search_trials"] == 2 and arms["ERM"]["search_trials"] == 1
    text = headline_text(verdict)
    assert "DANN vs ERM: heldout_test_acc better" in text and "1 ERM" in text and "2 DANN" in text


def test_verdict_file_holds_each_method_and_metric(sweep_dir):
    write_verdict(sweep_dir, n_boot=20)
    written = json.loads((sweep_dir / sweep_files.VERDICT_FILE).read_text())
    for arm in written["arms"]:
        assert {"name", "method", "config", "seeds", "trial_ids", "metrics"} <= set(arm)
        for metric in ("heldout_test_acc", "mixing", "replicate_map"):
            assert {"mean", "lo", "hi", "vs_erm"} <= set(arm["metrics"][metric])
    assert load_sweep(sweep_dir).confirm and not math.isnan(written["arms"][0]["metrics"]["mixing"]["mean"])


def test_each_method_confirms_its_best_finished_trial(tmp_path):
    """choose_configs: per method, the best aggregate rank on the objectives (validation only),
    among finished trials when there are any; a stopped trial's early scores never out-rank them."""
    from rxsweep.tuning.confirm import choose_configs
    from rxsweep.tuning.space_yaml import load_space

    space = load_space(Path(__file__).parent / "spaces" / "tiny.yaml")  # objectives: accuracy, mixing
    for trial_id, params, status, acc, mixing in (
            ("e1", {"domain_label": "none", "lr": 0.01}, "completed", 0.30, 0.60),
            ("e2", {"domain_label": "none", "lr": 0.002}, "completed", 0.25, 0.70),
            ("e3", {"domain_label": "none", "lr": 0.003}, "completed", 0.20, 0.50),  # dominated
            ("d1", {"domain_label": "plate", "lr": 0.01}, "completed", 0.20, 0.70),
            ("d2", {"domain_label": "plate", "lr": 0.005}, "stopped", 0.90, 0.90),  # epoch 4 of 8
            ("d3", {"domain_label": "plate", "lr": 0.004}, "error", 0.99, 0.99)):
        run = tmp_path / sweep_files.TRIALS_DIR / trial_id
        run.mkdir(parents=True)
        fileio.write_json(run / sweep_files.PARAMS_FILE, params)
        fileio.write_json(run / sweep_files.STATUS_FILE, {"status": status})
        run_files.write_history(run / run_files.METRICS_FILE, [{"epoch": 1, "heldout_val_acc": acc, "mixing": mixing}])
    chosen = choose_configs(tmp_path, space)
    # ERM: e1 ranks (1, 2), e2 (2, 1), e3 (3, 3): e1 and e2 tie at 1.5, the first objective decides
    assert chosen["erm"]["source_trial"] == "e1" and chosen["erm"]["rank"] == 1.5
    assert chosen["dann"]["source_trial"] == "d1" and chosen["dann"]["params"] == {"domain_label": "plate", "lr": 0.01}
