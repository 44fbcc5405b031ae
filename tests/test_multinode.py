"""A sweep on a Ray cluster of two nodes started with Ray's own CLI (`ray start --head`, then `ray
start --address` with CPUs of its own) on this machine, submitted with `ray job submit`, storage
on one path both nodes see, or at a URI (file://, as s3:// would be) with a staging folder of
each node's own, as nodes without a shared disk have. Trials run on both nodes; mid-sweep the
second node's raylet is SIGKILLed (a node lost) under a trial between two checkpoints: the sweep
still finishes, that trial runs again on the head node from its checkpoint, and no finished
trial is lost or rerun."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest

from processes import HeadNode, shards_of, venv_without_rxsweep, wait_for
from rxsweep import fileio
from rxsweep.analysis.sweep_folder import load_sweep
from rxsweep.training import run_files
from rxsweep.training.run_files import read_history
from rxsweep.tuning import sweep_files
from test_cluster_sweep import finish, submit
from test_sweep import SPACES

def processes_of(trial_dir) -> list[dict]:
    return fileio.read_jsonl(trial_dir / sweep_files.PROCESSES_FILE)


def job_ended(head, job: str) -> bool:
    status = head.ray_cli("job", "status", "--address", head.address, job).stdout
    return any(state in status for state in ("succeeded", "failed", "stopped"))


@pytest.mark.cluster
@pytest.mark.parametrize("storage_kind", ["shared path", "uri"])
def test_a_sweep_on_two_nodes_survives_losing_one(storage_kind, tiny_sweep, tmp_path_factory, tmp_path):
    at_uri = storage_kind == "uri"
    staging = {node: tmp_path / f"staging-{node}" for node in ("head", "second")}
    head = HeadNode(venv_without_rxsweep(tmp_path_factory.mktemp("two-nodes") / "venv"), num_cpus=1,
                    env={"RXSWEEP_STAGING": str(staging["head"])})
    second = None
    try:
        second = head.add_node(num_cpus=1, env={"RXSWEEP_STAGING": str(staging["second"])})
        nodes = json.loads(head.ray_cli("list", "nodes", "--address", head.address, "--format", "json").stdout)
        assert len(nodes) == 2, nodes
        head_id = next(n["node_id"] for n in nodes if n["is_head_node"])
        second_id = next(n["node_id"] for n in nodes if not n["is_head_node"])

        storage = tmp_path / "store"  # one path both nodes see, or what the URI names
        data = f"file://{shards_of(tiny_sweep)}" if at_uri else str(shards_of(tiny_sweep))
        job = submit(head, ["--space", str(SPACES / "two_nodes.yaml"), "--data", data,
                            "--storage", f"file://{storage}" if at_uri else str(storage)])
        sweep_dir = storage / "sweeps" / "two_nodes"  # at a URI: what the mirrors pushed
        trials_dir = sweep_dir / sweep_files.TRIALS_DIR

        polls = iter(range(10**9))

        def trial_on_second_node_between_checkpoints():
            if next(polls) % 20 == 19 and job_ended(head, job):  # every ~10 s: fail now, not in 10 min
                logs = head.ray_cli("job", "logs", "--address", head.address, job).stdout
                raise AssertionError(f"the job ended before a trial ran on the second node:\n{logs[-4000:]}")
            for trial in trials_dir.glob("*") if trials_dir.exists() else []:
                started = processes_of(trial)
                epochs = [m["epoch"] for m in read_history(trial / run_files.METRICS_FILE)]
                if started and started[-1]["node_id"] == second_id and epochs == [1]:
                    return trial
            return None

        interrupted = wait_for(trial_on_second_node_between_checkpoints, 600, "a trial on the second node "
                               "between its first and second checkpoint")
        epoch1 = (interrupted / run_files.METRICS_FILE).read_text().splitlines()[0]
        raylet = second.raylet()
        lost = [raylet, *raylet.children(recursive=True)]  # the node's agents and workers die with it
        for proc in lost:
            proc.kill()
        psutil.wait_procs(lost, timeout=30)
        killed_at = time.time()

        log = finish(head, job)
        sweep = load_sweep(sweep_dir)
        assert sweep.finished and not sweep.lost and len(sweep.trials) == 4
        assert [t.status for t in sweep.trials] == ["completed"] * 4, [(t.trial_id, t.error) for t in sweep.trials]
        for trial in sweep.trials:  # every epoch exactly once
            assert [m["epoch"] for m in trial.history] == [1, 2, 3], trial.trial_id

        # the interrupted trial ran again on the head node and resumed at epoch 2
        starts = processes_of(interrupted)
        assert [s["node_id"] for s in starts] == [second_id, head_id], starts
        assert starts[1]["time"] > killed_at - 1
        assert (interrupted / run_files.METRICS_FILE).read_text().splitlines()[0] == epoch1
        # no other trial ran twice: a finished trial is never rerun
        assert all(len(processes_of(t.path)) == 1 for t in sweep.trials if t.path != interrupted)

        # trials ran on both nodes, as the cluster's state API (what the dashboard shows) says
        actors = [a for a in head.actors() if a["class_name"] == "ImplicitFunc"]
        where = {a["pid"]: a["node_id"] for a in actors}
        recorded = [s for t in sweep.trials for s in processes_of(t.path)]
        assert {s["node_id"] for s in recorded} == {head_id, second_id}
        assert all(where.get(s["pid"]) == s["node_id"] for s in recorded), (recorded, actors)
        assert fileio.read_json(interrupted / sweep_files.STATUS_FILE)["status"] == "completed"

        # ranking and report worked on the result
        assert (sweep_dir / "report.html").exists() and all(t.trial_id in log for t in sweep.trials)
        if not at_uri:
            assert str(sweep_dir) in log.splitlines()  # the job prints the sweep folder last
            return
        # at the URI, every process staged on its own node: the driver on the head (it prints its
        # staging copy), the interrupted trial on the second node, then on the head, where it
        # pulled its checkpoint
        assert any(Path(line).parent == staging["head"] for line in log.splitlines()), log[-2000:]
        for node in ("head", "second"):
            staged = list(staging[node].glob(f"{interrupted.name}-*"))
            assert len(staged) == 1 and (staged[0] / run_files.METRICS_FILE).is_file(), (node, staged)
    finally:
        if second is not None:
            second.stop()
        head.stop()


def test_the_example_kuberay_cluster_is_a_raycluster_with_token_auth_and_one_shared_volume():
    """jobs/kuberay-cluster.yaml, which the README points Kubernetes users to: valid YAML, token
    authentication on, and the same shared volume on the head and every worker (the sweep folder
    and the shards must be one path every node sees); the space its command names exists."""
    import re

    import yaml

    from processes import REPO

    text = (REPO / "jobs" / "kuberay-cluster.yaml").read_text()
    cluster, claim = yaml.safe_load_all(text)
    assert cluster["kind"] == "RayCluster" and cluster["spec"]["authOptions"]["mode"] == "token"
    pods = [cluster["spec"]["headGroupSpec"]["template"]["spec"],
            *[group["template"]["spec"] for group in cluster["spec"]["workerGroupSpecs"]]]
    for pod in pods:
        mounts = {m["name"]: m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                  if "persistentVolumeClaim" in v}
        assert mounts["shared"] == "/shared" and claims["shared"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for space in re.findall(r"--space (\S+)", text):
        assert (REPO / space).exists(), space
