"""Every command the docs show (```bash blocks of README.md and docs/**/*.md) is run by a test.

Each command is classified below, once, by what it needs:
  RUN_HERE              cheap (seconds, no Ray): run here, in the fast tier, as the docs show it
                        (`make` targets as `make -n`: the suite cannot run itself, nor the 6-minute
                        job, inside the fast tier; their recipes are checked instead)
  RUN_BY_TEST           needs Ray or a sweep: the node id of the test that runs it, or its
                        equivalent (the same entry point and options on the tests' own data and
                        storage for the placeholders PATH, SWEEP_DIR, ...)
  NEEDS_CLUSTER_OR_GPU  needs a cluster (`ray start`, `ray job submit`) or a GPU: the node id of
                        the test that runs its equivalent on this machine
A command shown in the docs and classified nowhere fails test_every_docs_command_is_classified,
saying how to classify it; an entry no page shows any more fails it too, so the lists stay what
the docs show. The docs mark nothing: a command that must not run here is classified here, never
edited there. A command is written as the page shows it with `\\` continuations joined, comments
(` # ...`) dropped and runs of spaces made one.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The fences whose lines are commands (an untagged fence is output: a verdict, a tree).
SHELL_FENCES = ("bash", "sh", "shell", "console", "zsh")

#: (i) Run here, for real, in the fast tier: command -> (argv run from the repository root, a text
#: its output must contain).
RUN_HERE: dict[str, tuple[list[str], str]] = {
    "make test": (["make", "-n", "test"], "-m pytest -q"),
    "make test-fast": (["make", "-n", "test-fast"], '-m pytest -q -m "not (ray or sweep or cluster or calibration)"'),
    "export RAY_AUTH_MODE=token": (["bash", "-c", "export RAY_AUTH_MODE=token && env"], "RAY_AUTH_MODE=token"),
}

_HEAD = "tests/test_cluster_sweep.py::test_the_embedded_default_runs_two_trials_at_once_on_a_2_cpu_node_and_answers"
_SHOTS = "tests/test_docs_commands.py::test_the_screenshot_script_retakes_both_images"

_PLATES = "tests/test_your_own_plates.py::test_the_pages_commands_end_in_a_verdict_on_held_out_sources"

#: (ii) Needs Ray or a sweep: command -> the tests (node ids) that run it or its equivalent.
RUN_BY_TEST: dict[str, tuple[str, ...]] = {
    # docs/guide/your-own-plates.md: the test reads the two commands off the page and runs them
    ".venv/bin/rxsweep synth --layout loaddata --preset tiny --out data/jump-tiny": (_PLATES,),
    ".venv/bin/rxsweep sweep --space search_spaces/jump_cpu.yaml --data data/jump-tiny --storage results": (_PLATES,),
    ".venv/bin/rxsweep sweep --space search_spaces/jump_cpu.yaml --data PLATES --storage results": (_PLATES,),
    # `make run` is `.venv/bin/python jobs/sweep.py` after the install (checked by
    # test_make_targets_the_docs_show_exist); the tiny sweep fixture runs jobs/sweep.py as a user does,
    # its own local Ray, ingest first; the cluster test runs it with every default.
    "make run": ("tests/test_sweep.py::test_job_that_ingests_first_still_runs_trials_side_by_side", _HEAD),
    ".venv/bin/rxsweep sweep --space search_spaces/default.yaml --data PATH [--storage results] [--name N]":
        ("tests/test_sweep.py::test_killed_sweep_driver_resumes_with_every_trial_exactly_once",
         "tests/test_cli.py::test_jobs_sweep_py_and_rxsweep_sweep_are_one_command"),
    ".venv/bin/python jobs/sweep.py --space search_spaces/default.yaml --data PATH [--storage results] [--name N]":
        ("tests/test_sweep.py::test_killed_sweep_driver_resumes_with_every_trial_exactly_once",),
    ".venv/bin/python jobs/sweep.py --space search_spaces/default.yaml --data PATH":
        ("tests/test_sweep.py::test_a_sweep_its_storage_stopped_names_the_path_and_stage_and_resume_continues_it",),
    ".venv/bin/rxsweep sweep --space search_spaces/default.yaml --data PATH":
        ("tests/test_sweep.py::test_a_sweep_its_storage_stopped_names_the_path_and_stage_and_resume_continues_it",
         "tests/test_cli.py::test_jobs_sweep_py_and_rxsweep_sweep_are_one_command"),
    ".venv/bin/rxsweep sweep --space search_spaces/default.yaml --data PATH --resume":
        ("tests/test_sweep.py::test_killed_sweep_driver_resumes_with_every_trial_exactly_once",
         "tests/test_sweep.py::test_a_sweep_its_storage_stopped_names_the_path_and_stage_and_resume_continues_it"),
    "docs/hooks/screenshots.sh": (_SHOTS,),
    "docs/hooks/screenshots.sh SWEEP_DIR": (_SHOTS,),
}

_CLUSTER_JOB = "tests/test_sweep.py::test_ray_job_submit_runs_a_sweep_and_a_killed_worker_resumes_from_its_checkpoint"
_TWO_NODES = "tests/test_multinode.py::test_a_sweep_on_two_nodes_survives_losing_one"
_GPU_SMOKE = "tests/test_smoke.py::test_the_gpu_space_passes_its_smoke_on_two_cpu_workers"

#: (iii) Needs a cluster or a GPU: command -> the tests (node ids) that run its equivalent here
#: (`ray start` on 127.0.0.1 ports of its own: tests/processes.py; the GPU space on CPU workers).
NEEDS_CLUSTER_OR_GPU: dict[str, tuple[str, ...]] = {
    "ray start --head": (_HEAD, _CLUSTER_JOB),
    "ray start --head --port=6379": (_HEAD, _TWO_NODES),
    "RAY_AUTH_MODE=token ray start --head --port=6379": (_HEAD, _TWO_NODES),
    "ray start --address=HEAD_IP:6379": (_TWO_NODES,),
    "RAY_AUTH_MODE=token ray start --address=HEAD_IP:6379": (_TWO_NODES,),
    "ray job submit --address http://127.0.0.1:8265 --working-dir . -- python jobs/sweep.py --space "
    "search_spaces/rxrx1_gpu.yaml --smoke --storage /shared/results": (_GPU_SMOKE, _CLUSTER_JOB),
    "ray job submit --address http://127.0.0.1:8265 --working-dir . -- python jobs/sweep.py --space "
    "search_spaces/rxrx1_gpu.yaml --data /shared/rxrx1_v1.0 --storage /shared/results": (_GPU_SMOKE, _TWO_NODES),
    "RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- python jobs/sweep.py "
    "--space search_spaces/default.yaml --data /shared/shards --storage /shared/results": (_TWO_NODES, _CLUSTER_JOB),
    "ray job logs --follow <submission id>": (_CLUSTER_JOB,),
    ".venv/bin/rxsweep sweep --space search_spaces/rxrx1_gpu.yaml --smoke": (_GPU_SMOKE,),
}

CLASSES = {"RUN_HERE": RUN_HERE, "RUN_BY_TEST": RUN_BY_TEST, "NEEDS_CLUSTER_OR_GPU": NEEDS_CLUSTER_OR_GPU}
HOW_TO_CLASSIFY = (
    "classify it in tests/test_docs_commands.py, written as the message shows it: RUN_HERE (argv and "
    "expected output) when it takes seconds and no Ray, so the fast tier runs it; RUN_BY_TEST (node ids of "
    "the tests that run it or its equivalent) when it needs Ray or a sweep; NEEDS_CLUSTER_OR_GPU (node ids "
    "of the tests that run its equivalent) when it needs `ray start`, `ray job submit` or a GPU")


def doc_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def commands_in(text: str) -> list[tuple[int, str]]:
    """(line number, command) of every command in the shell fences of a Markdown text."""
    found = []
    for fence in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        if fence[1] not in SHELL_FENCES:
            continue
        first = text.count("\n", 0, fence.start(2)) + 1
        pending, start = "", None
        for number, line in enumerate(fence[2].splitlines(), first):
            start = number if start is None else start
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = " ".join(re.sub(r"(^|\s)#.*$", "", pending + line).split())
            if command:
                found.append((start, command.removeprefix("$ ")))
            pending, start = "", None
    return found


def doc_commands() -> dict[str, list[str]]:
    """Every command the docs show -> where ("README.md:37", ...)."""
    where: dict[str, list[str]] = {}
    for page in doc_pages():
        for line, command in commands_in(page.read_text(encoding="utf-8")):
            where.setdefault(command, []).append(f"{page.relative_to(REPO)}:{line}")
    return where


def test_the_extraction_joins_continuations_and_drops_comments():
    text = ("```bash\nmake run    # the job\nray job submit --x . -- \\\n    python a.py --b c   # minutes\n"
            "                 # a comment alone\n```\n```\nnot a command\n```\n")
    assert commands_in(text) == [(2, "make run"), (3, "ray job submit --x . -- python a.py --b c")]


def test_every_docs_command_is_classified():
    shown = doc_commands()
    assert len(shown) >= 10, shown  # the extraction still finds the docs' commands
    twice = [c for c in shown if sum(c in d for d in CLASSES.values()) > 1]
    assert not twice, f"classified in more than one class: {twice}"
    unclassified = [f"`{c}` ({', '.join(shown[c])})" for c in shown if not any(c in d for d in CLASSES.values())]
    assert not unclassified, ("a command the docs show is run by no test: " + "; ".join(unclassified)
                              + f". To fix, {HOW_TO_CLASSIFY}.")
    stale = [f"{name}: `{c}`" for name, d in CLASSES.items() for c in d if c not in shown]
    assert not stale, f"classified but shown on no page (remove the entry, or fix it to the page's text): {stale}"


def defined_tests(path: Path) -> set[str]:
    """The test names a test module defines: `test_x`, and `TestClass::test_x` for methods."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names |= {f"{node.name}::{f.name}" for f in node.body
                      if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name.startswith("test")}
    return names


def test_each_test_named_for_a_command_exists():
    missing = []
    for name in ("RUN_BY_TEST", "NEEDS_CLUSTER_OR_GPU"):
        for command, node_ids in CLASSES[name].items():
            assert node_ids, f"{name}: `{command}` names no test"
            for node_id in node_ids:
                module, _, test = node_id.partition("::")
                path = REPO / module
                if not path.is_file() or test.split("[")[0] not in defined_tests(path):
                    missing.append(f"{name}: `{command}` -> {node_id}")
    assert not missing, f"these tests do not exist (renamed?): {missing}"


@pytest.mark.parametrize("command", sorted(RUN_HERE))
def test_cheap_docs_commands_run(command):
    argv, expected = RUN_HERE[command]
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert expected in done.stdout, done.stdout[-2000:]


def test_make_targets_the_docs_show_exist():
    """Every `make X` a page shows is a target (`make -n X` succeeds, running nothing); `make run`'s
    recipe is the job the docs say it is (`.venv/bin/python jobs/sweep.py`)."""
    targets = {c.split()[1] for c in doc_commands() if c.startswith("make ") and len(c.split()) == 2}
    assert {"run", "test", "test-fast"} <= targets, targets
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    for target in sorted(targets):
        done = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, (target, done.stderr[-2000:])
        if target == "run":
            assert ".venv/bin/python jobs/sweep.py" in done.stdout.splitlines()[-1], done.stdout


CHROMIUM = Path("/usr/bin/chromium")


def test_the_screenshot_script_retakes_both_images(tiny_sweep, tmp_path):
    """docs/hooks/screenshots.sh SWEEP_DIR OUT on the tests' tiny sweep: both PNGs, the headline
    one as wide as its verdict table needs and as tall as the box (not the whole page)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (CI installs it)")
    import struct

    done = subprocess.run(["bash", "docs/hooks/screenshots.sh", str(tiny_sweep), str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sizes = {}
    for name in ("report-headline.png", "docs-front.png"):
        head = (tmp_path / name).read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n", name
        sizes[name] = struct.unpack(">II", head[16:24])  # IHDR: width, height
    assert sizes["docs-front.png"] == (1280, 800), sizes
    width, height = sizes["report-headline.png"]
    assert 1280 <= width < 2500 and 150 < height < 1600, sizes  # the box, not the 10,000-pixel page
