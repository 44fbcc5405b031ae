"""Faults injected at random until nothing breaks: a sweep on a two-node cluster, SIGKILLed again
and again, must end as an uninterrupted run of it ends, with nothing lost.

    python bench/chaos.py [--seed 0] [--faults 20] [--gap 3 9] [--work DIR]

The cluster is Ray's own: `ray start --head` and `ray start --address` (a second node with its own
CPU, ports, temp folder and staging folder, as another machine has), on this machine. The sweep
(bench/chaos.py's SPACE: 4 trials x 3 epochs on the tiny synthetic set, FIFO so that every trial
runs every epoch, then 2 confirmation seeds for each method's best) runs from a driver on the head
node (`python jobs/sweep.py`, RAY_ADDRESS set), with its storage at a file:// URI, so every
process works in a staging folder and pushes to the URI after each epoch, as at s3://.

First the sweep runs uninterrupted (the baseline, timed). Then again, into another URI, while a
seeded random monkey waits a random gap (--gap) after the sweep last made progress (a new epoch at
the URI; or 20 s without one, so the report stage is hit too) and sends SIGKILL to one of:
- trial:  a trial's process (the Tune trial actor that trains, on either node);
- driver: the sweep driver and its children, then starts it again with --resume;
- raylet: the second node's raylet and everything under it (the node is lost), then starts a new
          second node (same staging folder: the machine's disk outlives its raylet);
- push:   a process caught in a mirror push (its partial upload `NAME.PID.tmp` at the URI names
          it): a trial's process, or the driver (then --resume).
Until the sweep ends. Then both sweeps are audited (bench/chaos_audit.py) and the cluster is asked
for placement groups still reserved.

Prints one JSON line: faults_injected, faults_survived (the sweep finished, the trial the fault hit
ended completed with every epoch once, and nothing at the URI was lost or changed), records_lost
(epochs missing, recorded twice, or changed after they were first seen at the URI, plus records
that do not parse: target 0), wall_overhead (interrupted / uninterrupted wall time), the faults by
kind, each fault, and both audits. Exit 1 when a fault was not survived or a record was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' helpers for `ray start` clusters and process trees
sys.path.insert(0, str(Path(__file__).parent))

from chaos_audit import EpochLedger, audit  # noqa: E402
from processes import TRIAL_PROCESS, HeadNode, kill_tree, start_sweep, train_workers_under  # noqa: E402
from rxsweep import fileio  # noqa: E402
from rxsweep.data.prepare import prepare_synthetic  # noqa: E402
from rxsweep.mirror import STAGING_ENV  # noqa: E402

SPACE = """
name: chaos
objectives: [heldout_val_acc, mixing]
num_samples: 4
seed: 0
scheduler: {type: fifo}
resources: {workers: 1, cpus_per_worker: 1}
failures: {worker_restarts: 0, trial_retries: 40}
confirm: {seeds: 2}
fixed: {epochs: 3, batch_size: 32, max_steps_per_epoch: 6, embedding_dim: 64, domain_width: 128,
        n_val_per_cell_type: 2, n_test_per_cell_type: 2}
start_with:
  - {domain_label: none}
  - {domain_label: plate}
  - {domain_label: experiment}
parameters:
  domain_label: {choice: [none, plate, experiment]}
  lr: {loguniform: [1.0e-3, 1.0e-2]}
"""
EPOCHS = 3
KINDS = {"trial": 0.35, "push": 0.25, "driver": 0.2, "raylet": 0.2}
#: A fault is due this long after the last one even when no epoch was recorded since (the stages
#: after the search record none).
STALL_S = 20.0
PARTIAL = re.compile(r"\.(\d+)" + re.escape(fileio.TMP_SUFFIX) + "$")


class Cluster:
    """A head node and a second node, each with its own staging folder; the second can be lost
    and replaced."""

    def __init__(self, work: Path) -> None:
        self.staging = {node: work / f"staging-{node}" for node in ("head", "second")}
        self.head = HeadNode(Path(sys.executable).parent, num_cpus=1, env={STAGING_ENV: str(self.staging["head"])})
        self.second = None
        self.replace_second()

    def replace_second(self) -> None:
        if self.second is not None:
            self.second.stop()  # what the lost raylet left
        self.second = self.head.add_node(num_cpus=1, env={STAGING_ENV: str(self.staging["second"])})

    def trial_processes(self) -> list[psutil.Process]:
        return [p for node in (self.head, self.second) for p in train_workers_under(node.tmpdir, TRIAL_PROCESS)]

    def reserved_placement_groups(self) -> list[dict]:
        listed = self.head.ray_cli("list", "placement-groups", "--address", self.head.address, "--detail",
                                   "--limit", "10000", "--format", "json", timeout=120)
        return [pg for pg in json.loads(listed.stdout) if pg["state"] != "REMOVED"]

    def stop(self) -> None:
        if self.second is not None:
            self.second.stop()
        self.head.stop()


class Driver:
    """`python jobs/sweep.py` on the head node, started again with --resume after each kill."""

    def __init__(self, cluster: Cluster, args: list[str], logs: Path) -> None:
        self.args, self.logs, self.starts = args, logs, 0
        self.env = {**cluster.head.client_env(), "RAY_ADDRESS": f"127.0.0.1:{cluster.head.gcs_port}",
                    STAGING_ENV: str(cluster.staging["head"])}
        self.proc = self._start()

    def _start(self) -> subprocess.Popen:
        self.starts += 1
        resume = ["--resume"] if self.starts > 1 else []
        return start_sweep([*self.args, *resume], self.env, self.logs / f"driver-{self.starts}.log")

    def kill_and_resume(self) -> None:
        kill_tree(self.proc)
        self.proc = self._start()

    def pids(self) -> set[int]:
        try:
            return {self.proc.pid, *(c.pid for c in psutil.Process(self.proc.pid).children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()


def caught_pushing(uri_root: Path, timeout: float) -> int | None:
    """The pid of a live process whose partial upload is at the URI now (polled every ~5 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for folder, _, files in os.walk(uri_root):
            for name in files:
                match = PARTIAL.search(name)
                if match and psutil.pid_exists(int(match.group(1))):
                    return int(match.group(1))
        time.sleep(0.005)
    return None


def inject(kind: str, rng: random.Random, cluster: Cluster, driver: Driver, uri_root: Path) -> dict | None:
    """One fault of ``kind``; what it hit, or None when there was nothing of that kind to hit."""
    at = time.time()
    if kind == "driver":
        driver.kill_and_resume()
        return {"kind": kind, "at": at}
    if kind == "raylet":
        raylet = cluster.second.raylet()
        trials = [p.pid for p in train_workers_under(cluster.second.tmpdir, TRIAL_PROCESS)]
        lost = [raylet, *raylet.children(recursive=True)]
        for proc in lost:
            proc.kill()
        psutil.wait_procs(lost, timeout=30)
        cluster.replace_second()
        return {"kind": kind, "at": at, "trial_pids": trials}
    if kind == "trial":
        trials = sorted(cluster.trial_processes(), key=lambda p: p.pid)
        if not trials:
            return None
        victim = rng.choice(trials)
        victim.kill()
        return {"kind": kind, "at": at, "trial_pids": [victim.pid]}
    pid = caught_pushing(uri_root, timeout=15.0)  # push
    if pid is None:
        return None
    if pid in driver.pids():
        driver.kill_and_resume()
        return {"kind": kind, "at": at, "hit": "driver"}
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return None  # it finished its push first
    return {"kind": kind, "at": at, "hit": "trial", "trial_pids": [pid]}


def run(work: Path, name: str, shards: str, rng: random.Random | None, args) -> dict:
    """The sweep into file://WORK/NAME, with faults when ``rng`` is given; its audit and figures."""
    uri_root = work / name
    sweep_dir = uri_root / "sweeps" / "chaos"
    logs = work / f"logs-{name}"
    logs.mkdir(parents=True)
    cluster = Cluster(work / f"nodes-{name}")
    faults, ledger = [], EpochLedger(sweep_dir)
    try:
        started = time.monotonic()
        driver = Driver(cluster, ["--space", str(work / "chaos.yaml"), "--data", f"file://{shards}",
                                  "--storage", f"file://{uri_root}"], logs)
        last_fault, epochs_then = time.monotonic(), 0
        gap = rng.uniform(*args.gap) if rng else None
        while driver.proc.poll() is None:
            time.sleep(0.2)
            epochs = ledger.observe()
            if rng is None:
                continue
            progressed = epochs > epochs_then or time.monotonic() - last_fault > STALL_S
            if not progressed or time.monotonic() - last_fault < gap:
                continue
            kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
            fault = inject(kind, rng, cluster, driver, uri_root)
            if fault is None:
                continue
            fault["epochs_recorded"] = epochs
            faults.append(fault)
            print(f"[chaos] fault {len(faults)}: {fault}", file=sys.stderr, flush=True)
            last_fault, epochs_then, gap = time.monotonic(), epochs, rng.uniform(*args.gap)
        wall = time.monotonic() - started
        result = {"wall_s": round(wall, 1), "driver_exit": driver.proc.returncode, "driver_starts": driver.starts,
                  "faults": faults, "audit": audit(sweep_dir, ledger, EPOCHS),
                  "reserved_placement_groups": len(cluster.reserved_placement_groups())}
    finally:
        cluster.stop()
    result["trial_pids"] = trial_pids(sweep_dir.resolve())
    return result


def trial_pids(sweep_dir: Path) -> dict[int, str]:
    """Every process a run trained in (its processes.jsonl), to tie a killed pid to its run."""
    from rxsweep.tuning import sweep_files

    out = {}
    for record in sweep_dir.rglob(sweep_files.PROCESSES_FILE):
        for start in fileio.read_jsonl(record):
            out[start["pid"]] = record.parent.relative_to(sweep_dir.resolve()).as_posix()
    return out


def survived(fault: dict, result: dict, next_at: float) -> bool:
    """Nothing at the URI was lost or changed, no placement group stayed reserved, no run errored
    between this fault and the next, every run the fault killed (by its pid in processes.jsonl)
    ended completed with every epoch, and after a driver was killed the resumed sweep finished
    with its verdict."""
    audit_ = result["audit"]
    if audit_["records_lost"] or result["reserved_placement_groups"]:
        return False
    if any(ended is not None and fault["at"] <= ended < next_at for ended in audit_["errored_at"].values()):
        return False
    hit = {result["trial_pids"].get(pid) for pid in fault.get("trial_pids", [])} - {None}
    if any(audit_["runs"].get(run) != ["completed", EPOCHS] for run in hit):
        return False
    if fault["kind"] == "driver" or fault.get("hit") == "driver":
        return result["driver_exit"] == 0 and audit_["finished"] and audit_["verdict"]
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faults", type=int, default=20, help="at least this many faults (exit 1 if fewer)")
    parser.add_argument("--gap", type=float, nargs=2, default=(3.0, 9.0),
                        help="seconds between a fault and the next, drawn uniformly (after progress)")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a new temp folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="rxsweep-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "chaos.yaml").write_text(SPACE)
    shards = prepare_synthetic(work / "data", preset="tiny", progress=False)

    clean = run(work, "uninterrupted", shards, None, args)
    chaos = run(work, "interrupted", shards, random.Random(args.seed), args)
    faults = chaos["faults"]
    summary = {
        "faults_injected": len(faults),
        "faults_survived": sum(survived(f, chaos, nxt["at"] if nxt else float("inf"))
                               for f, nxt in zip(faults, [*faults[1:], None])),
        "records_lost": chaos["audit"]["records_lost"],
        "wall_overhead": round(chaos["wall_s"] / clean["wall_s"], 2),
        "faults_by_kind": {k: sum(f["kind"] == k for f in faults) for k in KINDS},
        "same_end_as_uninterrupted": {k: (clean["audit"][k], chaos["audit"][k]) for k in
                                      ("finished", "trials", "confirm_runs", "epochs", "statuses", "verdict")},
        "uninterrupted": {k: v for k, v in clean.items() if k != "trial_pids"},
        "interrupted": {k: v for k, v in chaos.items() if k != "trial_pids"},
        "work": str(work),
    }
    print(json.dumps(summary))
    same = all(a == b for a, b in summary["same_end_as_uninterrupted"].values())
    ok = (same and summary["faults_survived"] == len(faults) >= args.faults and summary["records_lost"] == 0
          and clean["audit"]["records_lost"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
