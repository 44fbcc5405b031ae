"""How often are the verdict's words wrong? Its false-word rate (A/A) and its power, measured.

    python bench/verdict_calibration.py [--seeds 8] [--worse-epochs 4] [--from-sweep SWEEP]
                                        [--storage DIR] [--splits 35]

One configuration, ERM as the embedded default's search chose it (``--from-sweep``: the ERM of
a finished sweep's confirm.json; else the best ERM of a measured `make run`, below), is trained
with SEEDS fresh seeds on the tiny synthetic preset (the data `make run` uses), and the same
configuration at WORSE_EPOCHS epochs (half) with SEEDS more: two sweeps of one search trial each
and SEEDS confirmation runs (bench/.cache holds the data; --storage the runs, reused when there).
Then, with the verdict's own code (rxsweep.analysis.judging: the same resamples, seed level,
normal test on the bootstrap SE and Holm's correction over the words judged together):

- A/A (false discoveries): the ERM seeds split at random into two arms of SEEDS / 2 (every
  unordered split when --splits covers them), each split judged as if the arms were two methods
  (3 words: accuracy, mixing, replicate mAP). aa_false_word_rate = share of the words, over all
  splits and metrics, that are not "no detectable difference". Target <= 0.05. The splits reuse
  the same seeds, so they are not independent draws: the rate is that of these seeds' splits.
  The same with arms of 2 seeds (the embedded default's count), aa_false_word_rate_2_seeds.
- Power (true discoveries): SEEDS / 2 random ERM seeds against SEEDS / 2 random WORSE seeds, as
  many splits; power_acc = share where the word on accuracy is "worse". Target >= 0.8. The true
  difference is the mean over all seeds of each configuration's treatment accuracy on every
  held-out experiment, validation and test (16 on the tiny preset: the configuration is fixed,
  so the validation experiments chose nothing here), against the 8 test experiments the verdict
  sees.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

#: The best ERM of a measured `make run` (RESULTS.md, "The verdict's error rates"): used without
#: --from-sweep.
MEASURED_ERM = {"domain_label": "none", "lr": 0.003538, "normalization": "plate", "resampling": "none",
                "weight_decay": 0.0007257}
DEFAULT_SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "default.yaml"
NO_DIFFERENCE = "no detectable difference"


def erm_params(from_sweep: str | None) -> dict:
    if from_sweep is None:
        return dict(MEASURED_ERM)
    from rxsweep.tuning.confirm import read_confirm_file

    record = (read_confirm_file(from_sweep) or {}).get("erm")
    if record is None:
        raise SystemExit(f"{from_sweep}: no ERM in its confirm/confirm.json; run a sweep with confirmation runs first")
    return dict(record["params"])


def space_file(folder: Path, name: str, params: dict, epochs: int, seeds: int) -> Path:
    """A one-trial space of ``params`` (the space's fixed settings as default.yaml's) with
    ``seeds`` confirmation runs; JSON is YAML."""
    from rxsweep.yamlio import safe_load

    fixed = {**safe_load(DEFAULT_SPACE.read_text())["fixed"], **{k: v for k, v in params.items() if k != "lr"},
             "epochs": epochs}
    space = {"name": name, "objectives": ["heldout_val_acc"], "num_samples": 1, "seed": 0,
             "scheduler": {"type": "fifo"}, "resources": {"workers": 1, "cpus_per_worker": 1},
             "confirm": {"seeds": seeds}, "fixed": fixed, "parameters": {"lr": {"choice": [params["lr"]]}}}
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(space, indent=1))
    return path


def confirmation_tables(sweep_dir: Path) -> tuple[list, list[float]]:
    """The ERM arm's test tables (one a seed) and each seed's treatment accuracy on every held-out
    experiment (validation and test)."""
    from rxsweep.analysis.sweep_folder import load_sweep
    from rxsweep.analysis.verdict import arms_of
    from rxsweep.metrics.embedding_scores import read_embeddings

    sweep = load_sweep(sweep_dir)
    arm = next(a for a in arms_of(sweep) if a.method == "erm")
    by_id = {t.trial_id: t for t in sweep.confirm}
    accuracy = []
    for trial_id in arm.trial_ids:
        table = read_embeddings(by_id[trial_id].embeddings)
        treat = table[(table["well_type"] == "treatment") & table["split"].isin(["heldout_val", "heldout_test"])]
        accuracy.append(float((treat["prediction"] == treat["label"]).mean()))
    return [(t, None, s) for t, s in zip(arm.tables, arm.seeds)], accuracy


def splits_of(n: int, size: int, count: int, rng: np.random.Generator) -> list[tuple[list[int], list[int]]]:
    """``count`` splits of n seeds into two disjoint arms of ``size``: every unordered split when
    there are at most ``count`` of them, else random ones."""
    every = []
    for a in itertools.combinations(range(n), size):
        for b in itertools.combinations(sorted(set(range(n)) - set(a)), size):
            if (b, a) not in every:
                every.append((a, b))
    if len(every) > count:
        every = [every[i] for i in rng.choice(len(every), size=count, replace=False)]
    return [(list(a), list(b)) for a, b in every]


def judged(scores, arm_a: list[int], arm_b: list[int], seed: int) -> dict:
    """The verdict's words for arm_b against arm_a (table indices): metric -> record."""
    from rxsweep.analysis.judging import arm_bootstrap, arm_metrics, judge

    boot = arm_bootstrap(scores, [arm_a, arm_b], [("a",), ("b",)], seed)
    records = [arm_metrics([scores.full[t] for t in arm], boot[:, k]) for k, arm in enumerate((arm_a, arm_b))]
    judge(records, boot, reference=0)
    return records[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds of each configuration (even, >= 4)")
    parser.add_argument("--worse-epochs", type=int, default=4, help="epochs of the worse configuration")
    parser.add_argument("--from-sweep", help="take ERM's configuration from this finished sweep")
    parser.add_argument("--storage", default=str(Path(__file__).parent / ".cache" / "verdict_calibration"))
    parser.add_argument("--splits", type=int, default=35, help="splits judged for each figure")
    args = parser.parse_args()
    if args.seeds < 4 or args.seeds % 2:
        raise SystemExit("--seeds must be even and at least 4 (two arms of half of them)")

    from rxsweep.analysis.judging import METRICS, N_BOOT, score_tables
    from rxsweep.data.prepare import prepare_synthetic
    from rxsweep.tuning.sweep import run_sweep
    from rxsweep.yamlio import safe_load

    started = time.perf_counter()
    storage = Path(args.storage)
    storage.mkdir(parents=True, exist_ok=True)
    data = str(prepare_synthetic(Path(__file__).parent / ".cache", preset="tiny", progress=False))
    params = erm_params(args.from_sweep)
    epochs = int(safe_load(DEFAULT_SPACE.read_text())["fixed"]["epochs"])
    sweeps = {}
    for name, n_epochs in (("erm", epochs), ("worse", args.worse_epochs)):
        # named by what was trained, so a later call with other epochs or seeds never reuses it
        space = space_file(storage, f"calibration-{n_epochs}-epochs-{args.seeds}-seeds", params, n_epochs, args.seeds)
        resume = (storage / "sweeps" / space.stem).exists()
        sweeps[name] = run_sweep(space, data, storage=storage / "sweeps", resume=resume, echo=False)
    trained = time.perf_counter()

    erm_tables, erm_truth = confirmation_tables(sweeps["erm"])
    worse_tables, worse_truth = confirmation_tables(sweeps["worse"])
    n = len(erm_tables)
    scores = score_tables(erm_tables + worse_tables)  # every table on the same resamples, once
    scored = time.perf_counter()

    rng = np.random.default_rng(0)
    aa = {size: [judged(scores, a, b, seed=i) for i, (a, b) in enumerate(splits_of(n, size, args.splits, rng))]
          for size in (n // 2, 2)}
    power = []
    for i in range(args.splits):
        a = sorted(rng.choice(n, size=n // 2, replace=False).tolist())
        b = sorted((n + rng.choice(len(worse_tables), size=n // 2, replace=False)).tolist())
        power.append(judged(scores, a, b, seed=1000 + i))

    def false_rate(records: list[dict], metrics: tuple[str, ...] = METRICS) -> float:
        words = [r[m]["vs_erm"] for r in records for m in metrics if r[m]["vs_erm"] is not None]
        return round(sum(w != NO_DIFFERENCE for w in words) / len(words), 4)

    def raw_p(records: list[dict]) -> list[float]:
        return [r[m]["difference"]["p"] for r in records for m in METRICS if r[m]["difference"] is not None]

    test_acc = [f["heldout_test_acc"] for f in scores.full]
    print(json.dumps({
        "bench": "verdict_calibration", "seeds": n, "arm_seeds": n // 2, "splits": args.splits, "n_boot": N_BOOT,
        "config": params, "epochs": epochs, "worse_epochs": args.worse_epochs,
        "aa_false_word_rate": false_rate(aa[n // 2]),
        "aa_false_word_rate_by_metric": {m: false_rate(aa[n // 2], (m,)) for m in METRICS},
        "aa_false_word_rate_2_seeds": false_rate(aa[2]),
        # uncorrected, a calibrated test's p is uniform under no difference: 5 % below 0.05
        "aa_raw_p_below_0.05": round(float(np.mean(np.array(raw_p(aa[n // 2])) < 0.05)), 4),
        "aa_raw_p_below_0.05_2_seeds": round(float(np.mean(np.array(raw_p(aa[2])) < 0.05)), 4),
        "aa_raw_p_median": round(float(np.median(raw_p(aa[n // 2]))), 4),
        "power_acc": round(float(np.mean([r["heldout_test_acc"]["vs_erm"] == "worse" for r in power])), 4),
        "power_words_acc": {w: sum(r["heldout_test_acc"]["vs_erm"] == w for r in power)
                            for w in ("better", "worse", NO_DIFFERENCE)},
        "targets": {"aa_false_word_rate": 0.05, "power_acc": 0.8},
        "true_acc_difference": round(float(np.mean(worse_truth) - np.mean(erm_truth)), 4),
        "true_acc": {"erm": round(float(np.mean(erm_truth)), 4), "worse": round(float(np.mean(worse_truth)), 4)},
        "test_acc_difference": round(float(np.mean(test_acc[n:]) - np.mean(test_acc[:n])), 4),
        "test_acc_by_seed": {"erm": [round(x, 4) for x in test_acc[:n]], "worse": [round(x, 4) for x in test_acc[n:]]},
        "stages_s": {"train": round(trained - started, 1), "score_tables": round(scored - trained, 1),
                     "judge": round(time.perf_counter() - scored, 1)},
    }))


if __name__ == "__main__":
    main()
