"""Does ray.tune.get_context() name the *current* trial when Tune reuses an actor?

Runs a function trainable under ``tune.TuneConfig(reuse_actors=True)`` with FIFO
and with ASHA (scores chosen so ASHA stops some trials at its first rungs), each
with max_concurrent_trials=1 and 2. Every iteration of every trial appends a
JSONL line (pid, config token, get_context() trial id / name / dir); afterwards
the token is mapped back to the trial id Tune reports in the Tuner's results.
Prints one JSON line per (scheduler, concurrency): trials, distinct actor pids,
how many trials ran on a reused actor, and how many trials saw a get_context()
id / name / dir that is not their own. Self-contained (no rxsweep imports).

Run:  .venv/bin/python bench/reuse_actors_repro.py
"""
import collections
import json
import os
import tempfile
import time

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

N_TRIALS = 6
ITERS = 4
# Score multiplier per token: mixed order so ASHA (rf=2) stops some trials early.
WEIGHTS = [3, 0, 5, 1, 4, 2]
_PROCESS_CACHE = {}  # what a trainable must NOT do: per-process memo of the id




def trainable(config):
    ctx = tune.get_context()
    tok = config["token"]
    cached_id = _PROCESS_CACHE.setdefault("id", ctx.get_trial_id())
    for i in range(ITERS):
        rec = {
            "pid": os.getpid(),
            "token": tok,
            "iter": i,
            "ctx_id": ctx.get_trial_id(),
            "ctx_name": ctx.get_trial_name(),
            "ctx_dir": ctx.get_trial_dir(),
            "cached_id": cached_id,
        }
        with open(config["log"], "a") as f:  # absolute path: Tune chdirs per trial
            f.write(json.dumps(rec) + "\n")
        time.sleep(0.3)  # long enough for two trials to overlap at concurrency 2
        tune.report({"score": WEIGHTS[tok] * (i + 1), "token": tok})


def run(sched_name, concurrency, workdir):
    log = os.path.join(workdir, f"{sched_name}_c{concurrency}.jsonl")
    if sched_name == "asha":
        sched = ASHAScheduler(time_attr="training_iteration", metric="score",
                              mode="max", grace_period=1, reduction_factor=2,
                              max_t=ITERS)
    else:
        sched = FIFOScheduler()
    tuner = tune.Tuner(
        trainable,
        param_space={"token": tune.grid_search(list(range(N_TRIALS))), "log": log},
        tune_config=tune.TuneConfig(reuse_actors=True, scheduler=sched,
                                    max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(name=f"{sched_name}_c{concurrency}",
                                  storage_path=os.path.join(workdir, "store"),
                                  verbose=0),
    )
    grid = tuner.fit()
    real = {}  # token -> (trial_id, trial dir basename, iterations run)
    for r in grid:
        real[r.config["token"]] = (r.metrics["trial_id"], os.path.basename(r.path),
                                   r.metrics["training_iteration"])
    recs = [json.loads(line) for line in open(log)]
    tok_pids = collections.defaultdict(set)
    bad_id, bad_name, bad_dir, bad_cache = set(), set(), set(), set()
    dir_kinds = collections.Counter()
    for rec in recs:
        tid, tdir, _ = real[rec["token"]]
        tok_pids[rec["token"]].add(rec["pid"])
        if rec["ctx_id"] != tid:
            bad_id.add(rec["token"])
        if not rec["ctx_name"].endswith(tid):  # name is "<trainable>_<trial_id>"
            bad_name.add(rec["token"])
        if os.path.basename(rec["ctx_dir"]) != tdir:
            bad_dir.add(rec["token"])
        if rec["cached_id"] != tid:
            bad_cache.add(rec["token"])
        dir_kinds[os.path.basename(os.path.dirname(rec["ctx_dir"]))] += 1
    pid_trials = collections.Counter(p for ps in tok_pids.values() for p in ps)
    return {
        "scheduler": sched_name,
        "max_concurrent_trials": concurrency,
        "trials": len(real),
        "stopped_early": sum(1 for v in real.values() if v[2] < ITERS),
        "distinct_pids": len(pid_trials),
        "trials_on_reused_actor": len(real) - len(pid_trials),
        "ctx_id_mismatch": len(bad_id),
        "ctx_name_mismatch": len(bad_name),
        "ctx_dir_basename_mismatch": len(bad_dir),
        "ctx_dir_parent_counts": dict(dir_kinds),  # per-iteration records
        "process_cached_id_mismatch": len(bad_cache),
    }


def main():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    workdir = tempfile.mkdtemp(prefix="reuse_actors_repro_")
    out = {f"{s}_c{c}": run(s, c, workdir) for s in ("fifo", "asha") for c in (1, 2)}
    ray.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
