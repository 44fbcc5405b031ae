"""The `rxsweep` console script as a user runs it: installed entry point, real subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rxsweep.data.synth.writers import truth_file

RXSWEEP = str(Path(sys.executable).with_name("rxsweep"))


def run(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([RXSWEEP, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_help_lists_every_command_without_importing_ray_or_torch():
    done = subprocess.run([sys.executable, "-c", (
        "import sys; from rxsweep.cli import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in ('ray', 'torch') if m in sys.modules))")], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
    helped = run("--help")
    assert helped.returncode == 0
    for command in ("synth", "ingest", "train"):
        assert command in helped.stdout


@pytest.mark.ray  # the ingest subprocess starts a local Ray
def test_synth_then_ingest_then_ingest_again_is_a_no_op(tmp_path):
    made = run("synth", "--out", str(tmp_path / "raw"), "--preset", "tiny", "--image-size", "32", "--workers", "1")
    assert made.returncode == 0, made.stderr
    root = Path(made.stdout.strip())
    assert (root / "train.csv").exists() and truth_file(root).exists() and not (root / "truth.json").exists()

    first = run("ingest", "--data", str(root), "--out", str(tmp_path / "shards"), "--quiet")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("2304 sites written, 0 quarantined (2304 listed)")
    shards = sorted(p.name for p in (tmp_path / "shards").rglob("*.parquet"))
    again = run("ingest", "--data", str(root), "--out", str(tmp_path / "shards"), "--quiet")
    assert again.returncode == 0 and again.stdout == first.stdout
    assert sorted(p.name for p in (tmp_path / "shards").rglob("*.parquet")) == shards


@pytest.mark.parametrize("args, message", [
    (["synth", "--out", "{tmp}/x", "--preset", "huge"], "invalid choice: 'huge'"),
    (["ingest", "--data", "{tmp}/nowhere", "--out", "{tmp}/s"], "nowhere"),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path, args, message):
    done = run(*[a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_jobs_sweep_py_and_rxsweep_sweep_are_one_command():
    """The same options with the same meanings: jobs/sweep.py is `rxsweep sweep`."""
    job = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "jobs" / "sweep.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    cli = run("sweep", "--help")
    assert job.returncode == cli.returncode == 0, job.stderr + cli.stderr
    assert job.stdout == cli.stdout
    for option in ("--space", "--data", "--storage", "--name", "--resume", "--num-samples", "--max-concurrent",
                   "--preset", "--smoke"):
        assert option in cli.stdout


@pytest.mark.parametrize("name", ["../../outside", "a/b", ".hidden", ""])
def test_a_sweep_name_must_be_one_folder_name(tmp_path, name):
    space = Path(__file__).resolve().parent / "spaces" / "tiny.yaml"
    done = run("sweep", "--space", str(space), "--storage", str(tmp_path / "store"), "--name", name)
    assert done.returncode == 2 and "must be one folder name" in done.stderr, done.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "outside").exists()


@pytest.mark.parametrize("option, value", [("--storage", "s3:/bucket/rxsweep"), ("--data", "gs:bucket/shards")])
@pytest.mark.parametrize("smoke", [[], ["--smoke"]])
def test_a_mistyped_uri_is_refused_before_any_folder_or_data(tmp_path, option, value, smoke):
    done = run("sweep", option, value, *smoke, cwd=tmp_path)
    assert done.returncode == 2 and "looks like a URI but is not one" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []  # no `s3:` folder, no synthetic data generated


def test_an_os_error_is_one_line_naming_its_path_or_the_removed_working_directory(tmp_path):
    from rxsweep.cli import describe_error

    assert describe_error(PermissionError(13, "Permission denied", "/shared/results")).endswith(
        "Permission denied: '/shared/results'")
    assert describe_error(OSError(28, "No space left on device")).startswith("[Errno 28] No space left on device")
    gone = tmp_path / "gone"
    gone.mkdir()
    said = subprocess.run([sys.executable, "-c", (
        "import os, sys; from rxsweep.cli import describe_error; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
        "print(describe_error(FileNotFoundError(2, 'No such file or directory')))"), str(gone)],
        capture_output=True, text=True, timeout=60)
    assert "working directory was removed" in said.stdout, said.stderr


def test_a_relative_location_is_said_absolute_and_refused_inside_a_ray_job(tmp_path):
    """Outside a job, `--data nowhere` is resolved once and said; in a job's environment (what
    Ray's job supervisor sets: a real `ray job submit` is in tests/test_cluster_sweep.py) it is
    refused before any work."""
    import os

    from rxsweep.cluster import JOB_ENV

    space = Path(__file__).resolve().parent / "spaces" / "tiny.yaml"
    args = [RXSWEEP, "sweep", "--space", str(space), "--storage", str(tmp_path / "store"), "--data", "nowhere"]
    inside = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, JOB_ENV: "{}"})
    assert inside.returncode == 2 and "relative path inside a Ray job" in inside.stderr, inside.stderr
    assert not (tmp_path / "store").exists()  # refused before the storage was touched
    outside = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert outside.returncode == 2 and f"--data: {tmp_path / 'nowhere'}" in outside.stderr, outside.stderr
