"""Entry point for `ray job submit ... -- python jobs/sweep.py` and for local runs.

Thin on purpose: it parses arguments and calls rxsweep. With no arguments it runs the embedded
default: the tiny synthetic RxRx1 dataset, generated and ingested under --storage if absent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", type=Path, default=Path("results"),
                        help="folder for data, shards and sweep results (default: ./results)")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small", "full"],
                        help="synthetic preset used when no --data is given")
    args = parser.parse_args(argv)

    from rxsweep.data.prepare import prepare_synthetic

    shards = prepare_synthetic(args.storage, preset=args.preset)
    print(f"shards ready: {shards}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
