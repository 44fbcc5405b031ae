"""The documentation site (mkdocs.yml, docs/) builds offline in strict mode, and the README points
into it. Fast tier: mkdocstrings reads the docstrings by static analysis, so nothing imports Ray."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    """`mkdocs build --strict` into a temporary folder (what `make docs` runs into site/)."""
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(REPO / "mkdocs.yml"), "--site-dir", str(site)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    # Strict mode turns every warning into a failure: a broken link or anchor, a page missing from
    # the nav, a module mkdocstrings cannot find. Its log says which.
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    print(f"mkdocs build --strict: {time.monotonic() - started:.1f} s")
    return site


def test_the_site_builds_in_strict_mode_with_its_title_on_the_home_page(built_site):
    index = built_site / "index.html"
    assert index.is_file()
    assert "<title>rxsweep</title>" in index.read_text(encoding="utf-8")


def test_the_reference_is_generated_from_the_docstrings(built_site):
    """Each public module named in docs/reference/ has its own section, with its docstring."""
    for page, modules in {
        "cli": ["rxsweep.cli"],
        "data": ["rxsweep.data.sites", "rxsweep.data.prepare"],
        "tuning": ["rxsweep.tuning.space", "rxsweep.tuning.sweep"],
        "analysis": ["rxsweep.analysis.verdict", "rxsweep.analysis.ranking", "rxsweep.analysis.report"],
        "metrics": ["rxsweep.metrics.mixing", "rxsweep.metrics.replicate_retrieval"],
    }.items():
        html = (built_site / "reference" / page / "index.html").read_text(encoding="utf-8")
        for module in modules:
            assert f'id="{module}"' in html, (page, module)
    cli = (built_site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "--confirm-seeds" in cli  # the help texts, written from the parser at build time


def test_the_site_loads_no_asset_from_the_network(built_site):
    """Offline: no web fonts, scripts or stylesheets from a server (links to other sites are fine)."""
    remote = re.compile(r"<(?:script|img)\b[^>]*\bsrc=\"(?:https?:)?//|<link\b[^>]*\bhref=\"(?:https?:)?//")
    for page in built_site.rglob("*.html"):
        found = remote.search(page.read_text(encoding="utf-8"))
        assert found is None, (page.relative_to(built_site), found.group(0) if found else None)
    for sheet in built_site.rglob("*.css"):
        assert not re.search(r"(?:@import|url\()\s*[\"']?(?:https?:)?//", sheet.read_text(encoding="utf-8")), sheet


def test_the_readme_links_into_pages_that_exist_and_runs_what_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 150
    targets = re.findall(r"\]\((docs/[^)#\s]+)", readme)
    assert targets, "the README links into docs/"
    for target in targets:
        assert (REPO / target).is_file(), target
    # .ci/run is the README's test command and nothing else.
    assert "make test\n" in (REPO / ".ci" / "run").read_text() and "make test " in readme
