"""Entry point for `ray job submit --working-dir . -- python jobs/sweep.py ...` and for local runs.

Thin on purpose: the same command as `rxsweep sweep`, with the same options and meanings
(`python jobs/sweep.py --help`). With no arguments it runs the embedded default: the tiny
synthetic RxRx1 (generated and ingested under --storage if absent), the search_spaces/default.yaml
study with a small budget. It says a line a phase and a trial event (Ray's and Tune's own output
goes to SWEEP/logs/driver.log; --verbose shows it instead), then the verdict's sentence and
table, the top trials, the HTML report's path and the sweep folder, the last line.

Under `ray job submit --working-dir .` the cluster's nodes need Ray, torch and the other
dependencies but not rxsweep: when `import rxsweep` fails, this script puts the checkout's
platform/ on sys.path and rxsweep ships the package to every Ray worker (rxsweep.cluster).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _import_rxsweep() -> None:
    try:
        import rxsweep  # noqa: F401
    except ImportError:  # a source checkout, e.g. a job's working dir: ship it to the workers too
        sys.path.insert(0, str(REPO / "platform"))
        os.environ["RXSWEEP_SHIP_PACKAGE"] = "1"


def main(argv: list[str] | None = None) -> int:
    _import_rxsweep()
    from rxsweep.cli import main as rxsweep_main

    return rxsweep_main(["sweep", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
