"""Entry point for `ray job submit --working-dir . -- python jobs/sweep.py ...` and for local runs.

Thin on purpose: it parses arguments and calls rxsweep. With no arguments it runs the embedded
default: the tiny synthetic RxRx1 (generated and ingested under --storage if absent), the
search_spaces/default.yaml study with a small budget on a local Ray, then the ranked table, the
HTML report's path and the sweep folder's path.

Under `ray job submit --working-dir .` the cluster's nodes need Ray, torch and the other
dependencies but not rxsweep: when `import rxsweep` fails, this script puts the checkout's
platform/ on sys.path and rxsweep ships the package to every Ray worker (rxsweep.cluster).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPACE = REPO / "search_spaces" / "default.yaml"
#: Trials of the embedded default: enough for ERM and both DANN domains to appear, and it ends in
#: minutes on 2 CPU cores. A --space or --data run uses the space's own num_samples.
EMBEDDED_SAMPLES = 6


def _import_rxsweep() -> None:
    try:
        import rxsweep  # noqa: F401
    except ImportError:  # a source checkout, e.g. a job's working dir: ship it to the workers too
        sys.path.insert(0, str(REPO / "platform"))
        os.environ["RXSWEEP_SHIP_PACKAGE"] = "1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=None, help=f"search space YAML (default: {DEFAULT_SPACE.name})")
    parser.add_argument("--data", type=Path, default=None,
                        help="shard folder, or an RxRx1 folder to ingest first (default: tiny synthetic)")
    parser.add_argument("--storage", type=Path, default=Path("results"),
                        help="folder for data, shards and sweeps (default: ./results)")
    parser.add_argument("--name", default=None, help="sweep folder name (default: the space's name)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    parser.add_argument("--num-samples", type=int, default=None, help="trials (default: the space's)")
    parser.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: what fits)")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small", "full"],
                        help="synthetic preset used when no --data is given")
    args = parser.parse_args(argv)
    _import_rxsweep()

    from rxsweep.analysis.ranking import format_table, rank_sweep
    from rxsweep.data.prepare import prepare_data, prepare_synthetic
    from rxsweep.tuning.sweep import run_sweep

    embedded = args.data is None and args.space is None
    if args.data is None:
        shards = prepare_synthetic(args.storage, preset=args.preset)
    else:
        shards = prepare_data(args.data, args.storage)
    num_samples = args.num_samples or (EMBEDDED_SAMPLES if embedded else None)
    try:
        sweep_dir = run_sweep(args.space or DEFAULT_SPACE, shards, storage=args.storage / "sweeps",
                              name=args.name, resume=args.resume, num_samples=num_samples,
                              max_concurrent=args.max_concurrent)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:  # bad input: one clear line
        print(f"jobs/sweep.py: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rank_sweep(sweep_dir)), end="")
    from rxsweep.analysis.report import write_report

    print(f"report: {write_report(sweep_dir)}")
    print(sweep_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
