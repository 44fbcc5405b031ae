"""Measuring a Ray data path from its driver while an epoch runs: CPU-seconds of the driver and of
every process below it, by kind of process (from their Ray titles), and the object store's peak
bytes (bench/stream_vs_ray_data.py)."""

from __future__ import annotations

import threading
import time

import psutil

# Process title (Ray sets "ray::<what it runs>") -> where its CPU-seconds are counted.
KINDS = (("SplitCoordinator", "split_coordinator"), ("FooterReader", "listing"), ("ListFiles", "listing"),
         ("ReadFiles", "read_tasks"), ("MapBatches", "read_tasks"), ("_StatsActor", "ray_data_actors"),
         ("Coordinator", "ray_data_actors"), ("raylet", "ray_system"), ("gcs_server", "ray_system"),
         ("Agent", "ray_system"), ("dashboard", "ray_system"), ("monitor", "ray_system"))


def _kind(title: str) -> str:
    return next((kind for key, kind in KINDS if key in title), "other_workers")


class Watch:
    """While an epoch runs: the store's peak bytes and the titles of new or idle worker processes
    (every 0.1 s); CPU-seconds of the driver and every process below it, before and after, by
    kind. A process that exits during the epoch (Ray Data's FooterReader actors are killed after
    each listing) counts with its CPU-seconds when last seen (at most 0.1 s before it ended), or,
    if its parent waits for it, as "reaped_children"."""

    def __init__(self, store: "Store", consumers: set[int], sample_store: bool = False):
        self.store, self.me, self.consumers, self.sample_store = store, psutil.Process(), consumers, sample_store
        self.peak, self.titles, self.sampler_cpu, self.last = None, {}, 0.0, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _look(self, cpu: bool) -> dict[int, tuple[float, float]]:
        """{pid: (own CPU-s, CPU-s of reaped children)}; learns titles of workers not yet named."""
        out = {}
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                if _kind(self.titles.get(proc.pid, "")) == "other_workers":  # not named yet, idle or starting
                    self.titles[proc.pid] = " ".join(proc.cmdline())[:120] or proc.name()
                if cpu:
                    t = proc.cpu_times()
                    out[proc.pid] = (t.user + t.system, t.children_user + t.children_system)
            except psutil.Error:
                pass
        return out

    def _run(self):
        started = time.thread_time()
        while not self._stop.is_set():
            if self.sample_store:
                self.peak = max(self.peak or 0, int(self.store.stats().object_store_bytes_used))
            self.last.update(self._look(cpu=True))
            self.sampler_cpu = time.thread_time() - started
            self._stop.wait(0.1)

    def __enter__(self):
        self.spilled = int(self.store.stats().spilled_bytes_total)
        self.before = self._look(cpu=True)
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.wall = time.perf_counter() - self.started
        after = self._look(cpu=True)
        self.spilled = int(self.store.stats().spilled_bytes_total) - self.spilled
        self.exited = {pid: cpu for pid, cpu in self.last.items() if pid not in after}
        self.processes_started = len((set(self.last) | set(after)) - set(self.before))
        self.by_kind: dict[str, float] = {}
        for pid, (own, reaped) in {**self.exited, **after}.items():
            own0, reaped0 = self.before.get(pid, (0.0, 0.0))
            kind = ("driver" if pid == self.me.pid else "consumers" if pid in self.consumers
                    else _kind(self.titles.get(pid, "")))
            if kind == "other_workers" and pid in self.exited:  # killed before it ran anything
                kind = "ended_while_starting"  # (here: FooterReader actors, killed after the listing)
            self.by_kind[kind] = self.by_kind.get(kind, 0.0) + own - own0
            self.by_kind["reaped_children"] = self.by_kind.get("reaped_children", 0.0) + reaped - reaped0
        self.by_kind["driver"] -= self.sampler_cpu  # this benchmark's own watching
        self.cpu = sum(self.by_kind.values())


class Store:
    """The store stats of this script's own Ray (stream_memory.store_bytes_used's source, with the
    address given: the machine may run other Ray instances, and one client serves every sample)."""

    def __init__(self):
        import ray
        from ray._private.internal_api import get_state_from_address

        self.state = get_state_from_address(ray.get_runtime_context().gcs_address)
        node = next(n for n in self.state.node_table() if n["Alive"])
        self.raylet = (node["NodeManagerAddress"], node["NodeManagerPort"])

    def stats(self):
        from ray._private.internal_api import get_memory_info_reply

        return get_memory_info_reply(self.state, *self.raylet).store_stats


def summary(results: list[dict], watch: Watch) -> dict:
    batches = sum(r["batches"] for r in results)
    return {"batches": batches, "rows": sum(r["rows"] for r in results), "cpu_s": round(watch.cpu, 2),
            "wall_s": round(watch.wall, 2), "batches_per_cpu_s": round(batches / watch.cpu, 3),
            "sites_per_cpu_s": round(sum(r["rows"] for r in results) / watch.cpu, 1),
            "cores_busy": round(watch.cpu / watch.wall, 2),
            "first_batch_s": round(max(r["first_batch_s"] or 0 for r in results), 2),
            "peak_object_store_bytes": watch.peak, "spilled_bytes": watch.spilled,
            "processes_started": watch.processes_started, "processes_ended": len(watch.exited),
            "ended_titles": sorted({watch.titles.get(pid, "?")[:60].strip() for pid in watch.exited}),
            "cpu_s_by_process": {k: round(v, 2) for k, v in sorted(watch.by_kind.items())}}
