"""Who may import whom (shared/DESIGN.md, "Layout"): the lower floors never import rxsweep.analysis,
and rxsweep.metrics imports nothing of rxsweep outside itself.

Read with ``ast``, not by importing, so an import inside a function (the lazy imports of the trial
driver) counts, and nothing heavy is imported. Absolute (``import x``, ``from x import y``) and
relative (``from ..x import y``) imports are resolved to dotted names first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "platform"  # holds the rxsweep package

#: floor -> the rxsweep packages no module of that floor may import.
FORBIDDEN = {
    "data": ("rxsweep.analysis",),
    "models": ("rxsweep.analysis",),
    "training": ("rxsweep.analysis",),
    "tuning": ("rxsweep.analysis",),
    "metrics": ("rxsweep.analysis", "rxsweep.training", "rxsweep.tuning", "rxsweep.data", "rxsweep.models"),
}


def _package_of(path: Path, src: Path) -> list[str]:
    """The package a module's relative imports start from, as name parts ('a/b/c.py' -> [a, b])."""
    # The folder, for a package's __init__.py (its own package) and a plain module alike.
    return list(path.relative_to(src).parts[:-1])


def imported_names(path: Path, src: Path) -> list[tuple[int, str, str]]:
    """(line, statement, dotted name) for every module name an import in ``path`` may load.

    ``from a.b import c`` yields a.b and a.b.c (c may be a submodule: ``from rxsweep import
    analysis`` imports rxsweep.analysis); relative imports are resolved against the package of
    ``path`` below ``src``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _package_of(path, src)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, ast.unparse(node), alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 >= len(package):  # Python refuses these too
                    raise ValueError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                base = package[:len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            stmt = ast.unparse(node)
            out.append((node.lineno, stmt, module))
            out += [(node.lineno, stmt, f"{module}.{alias.name}" if module else alias.name)
                    for alias in node.names if alias.name != "*"]
    return sorted(out, key=lambda item: item[0])  # ast.walk is breadth-first, not in line order


def floor_violations(src: Path, floor: str, forbidden: tuple[str, ...]) -> list[str]:
    """'file:line: `statement` imports <forbidden package>' for every bad import under src/rxsweep/floor."""
    found = []
    for path in sorted((src / "rxsweep" / floor).rglob("*.py")):
        seen = set()
        for line, stmt, name in imported_names(path, src):
            for bad in forbidden:
                if (name == bad or name.startswith(bad + ".")) and (line, bad) not in seen:
                    seen.add((line, bad))
                    found.append(f"{path.relative_to(src)}:{line}: `{stmt}` imports {bad}")
    return found


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_floor_imports_nothing_above_it(floor):
    files = list((SRC / "rxsweep" / floor).rglob("*.py"))
    assert files, f"no Python files under {SRC / 'rxsweep' / floor}: is the layout still the one tested?"
    bad = floor_violations(SRC, floor, FORBIDDEN[floor])
    assert not bad, "imports across floors (shared/DESIGN.md, 'Who may import whom'):\n" + "\n".join(bad)


def test_checker_catches_every_import_form(tmp_path):
    # A fake tree with one bad import of each form, and allowed imports that look alike.
    pkg = tmp_path / "rxsweep" / "metrics"
    (pkg / "mixing").mkdir(parents=True)
    (tmp_path / "rxsweep" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from .. import tuning\n")
    (pkg / "bad.py").write_text(
        "import numpy as np\n"                          # 1 allowed
        "import rxsweep.analysis.report\n"              # 2
        "from rxsweep.training import loop\n"           # 3
        "from rxsweep import data\n"                    # 4 a submodule named in the import list
        "from ..analysis.ranking import RANK_ON\n"      # 5 relative, two levels
        "from .checks import check_k\n"                 # 6 allowed: inside metrics
        "import rxsweep_analysis\n"                     # 7 allowed: a prefix, not a package
        "from rxsweep.metrics import topk\n"            # 8 allowed
        "def f():\n"
        "    import rxsweep.models as m\n"              # 10 inside a function
    )
    (pkg / "mixing" / "deep.py").write_text("from . import neighbors\nfrom ...tuning.trial import run_trial\n")
    bad = floor_violations(tmp_path, "metrics", FORBIDDEN["metrics"])
    assert bad == [
        "rxsweep/metrics/__init__.py:1: `from .. import tuning` imports rxsweep.tuning",
        "rxsweep/metrics/bad.py:2: `import rxsweep.analysis.report` imports rxsweep.analysis",
        "rxsweep/metrics/bad.py:3: `from rxsweep.training import loop` imports rxsweep.training",
        "rxsweep/metrics/bad.py:4: `from rxsweep import data` imports rxsweep.data",
        "rxsweep/metrics/bad.py:5: `from ..analysis.ranking import RANK_ON` imports rxsweep.analysis",
        "rxsweep/metrics/bad.py:10: `import rxsweep.models as m` imports rxsweep.models",
        "rxsweep/metrics/mixing/deep.py:2: `from ...tuning.trial import run_trial` imports rxsweep.tuning",
    ]
    # Only rxsweep.analysis is forbidden to the other floors: the same tree, judged as tuning.
    (tmp_path / "rxsweep" / "tuning").mkdir()
    (tmp_path / "rxsweep" / "tuning" / "trial.py").write_text((pkg / "bad.py").read_text())
    assert floor_violations(tmp_path, "tuning", FORBIDDEN["tuning"]) == [
        "rxsweep/tuning/trial.py:2: `import rxsweep.analysis.report` imports rxsweep.analysis",
        "rxsweep/tuning/trial.py:5: `from ..analysis.ranking import RANK_ON` imports rxsweep.analysis",
    ]


def test_relative_import_beyond_the_top_level_is_refused(tmp_path):
    (tmp_path / "rxsweep" / "metrics").mkdir(parents=True)
    (tmp_path / "rxsweep" / "metrics" / "odd.py").write_text("from ... import x\n")
    with pytest.raises(ValueError, match="beyond the top-level package"):
        floor_violations(tmp_path, "metrics", FORBIDDEN["metrics"])
