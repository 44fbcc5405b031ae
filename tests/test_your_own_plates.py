"""docs/guide/your-own-plates.md, run as a user runs it: its commands, read from the page, from
LoadData CSVs to a verdict judged on held-out sources (the JUMP-like synthetic preset stands in for
the user's plates; the sweep runs 2 trials and 1 confirmation seed instead of the space's 6 and 3)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from rxsweep.data.stream import open_shards
from test_docs_commands import commands_in

pytestmark = pytest.mark.sweep

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "guide" / "your-own-plates.md"
#: Fewer trials than the space's: the test checks the path, the study's own sweep is in the note.
SMALLER = ["--num-samples", "2", "--confirm-seeds", "1"]


def page_commands() -> list[list[str]]:
    """The page's first command block: synth, then the sweep (which ingests the plates once)."""
    section = PAGE.read_text(encoding="utf-8").split("## From LoadData CSVs to a verdict")[1].split("\n## ")[0]
    return [shlex.split(command) for _, command in commands_in(section)]


def test_the_pages_commands_end_in_a_verdict_on_held_out_sources(tmp_path: Path):
    commands = page_commands()
    assert [c[1] for c in commands] == ["synth", "sweep"]
    # The page's commands run from the repository root; here from a folder of their own (data/ and
    # results/ land there), which sees the repository's search spaces as the root does.
    (tmp_path / "search_spaces").symlink_to(REPO / "search_spaces")
    for argv in commands:
        argv = [str(REPO / argv[0]), *argv[1:], *(SMALLER if argv[1] == "sweep" else [])]
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=1500)
        assert done.returncode == 0, (argv, done.stdout[-3000:], done.stderr[-3000:])

    shards = tmp_path / "results" / "shards" / "jump-tiny"
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["layout"] == "loaddata" and manifest["n_channels"] == 5
    assert manifest["counts"]["quarantined"] == 0 and len(manifest["intensity_scaling"]["plates"]) == 24
    assert pd.read_csv(shards / "quarantine.csv").empty

    sweep = tmp_path / "results" / "sweeps" / "jump_cpu"
    verdict = json.loads((sweep / "verdict.json").read_text())
    assert {a["method"] for a in verdict["arms"]} >= {"erm", "dann", "features"}
    # Judged on whole sources: every batch of 2 of the 6 sources, and nothing else.
    splits = pd.read_parquet(next(sweep.glob("confirm/trials/*/splits.parquet")))
    sites = open_shards(shards).table
    test = sites[sites["site_id"].isin(splits.loc[splits["split"] == "heldout_test", "site_id"])]
    held = set(test["source"])
    assert len(held) == 2
    assert set(verdict["experiments"]) == set(sites.loc[sites["source"].isin(held), "experiment"])
    assert verdict["summary"].startswith("Against ERM")
