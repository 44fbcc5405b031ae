"""Records that a resume reads: a writer killed at any moment leaves each record whole (the old
one or the new one), and what killed writers left is cleared. No Ray."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from rxsweep import fileio

WRITER = """
import sys
from pathlib import Path
from rxsweep import fileio
from rxsweep.training.run_files import write_history
folder, history = Path(sys.argv[1]), []
for i in range(100000):
    history.append({"epoch": i + 1, "loss": 1.0 / (i + 1), "pad": "x" * (i % 5000)})
    fileio.write_json(folder / "status.json", {"epoch": i + 1, "pad": "y" * (i % 9000)})
    write_history(folder / "metrics.jsonl", history[-200:])
"""


def test_a_writer_killed_at_random_moments_leaves_every_record_whole(tmp_path):
    rng = random.Random(0)
    for kill in range(8):
        before = (tmp_path / "status.json").stat().st_mtime_ns if kill else 0
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
        while not (tmp_path / "status.json").exists() or (tmp_path / "status.json").stat().st_mtime_ns == before:
            assert writer.poll() is None, "the writer ended"
            time.sleep(0.01)  # it is writing: kill it at a seeded moment from here
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        status = fileio.read_json(tmp_path / "status.json")
        assert status is not None and status["epoch"] >= 1, kill
        history = fileio.read_jsonl(tmp_path / "metrics.jsonl")
        assert history.torn == 0 and [m["epoch"] for m in history] == list(range(history[0]["epoch"],
                                                                                    history[-1]["epoch"] + 1))


def test_stale_temporary_files_of_dead_writers_are_removed_and_a_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "trials" / "t1" / f"status.json.{dead.stdout.strip()}.1{fileio.TMP_SUFFIX}"
    live = tmp_path / f"sweep.json.{os.getpid()}.1{fileio.TMP_SUFFIX}"
    fresh = tmp_path / f"metrics.jsonl.{dead.stdout.strip()}.2{fileio.TMP_SUFFIX}"
    for path in (stale, live, fresh):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(live, (old, old))
    assert fileio.remove_stale_tmp(tmp_path) == 1
    assert not stale.exists() and live.exists() and fresh.exists()  # fresh: maybe another node's writer
