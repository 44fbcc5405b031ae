"""Ingest speed: sites a second a core, and what full RxRx1 would take on 16 and 64 cores.

rxsweep   `rxsweep ingest` of the `small` preset (3,840 sites of 6 PNGs at 512x512) into a new
          folder, one Ray task a shard on every core of this machine: decode, check, zstd Parquet,
          statistics, markers, manifest. sites/s/core = sites / wall / cores.
baseline  the bare work floor, in this process on one core: decoding the same sites' PNGs with
          PIL (rxsweep.data.images.decode_site) for a sample of them.

ratio = rxsweep per core / baseline per core: the share of a core's time ingest spends on the
decode it cannot avoid. The projection assumes ingest scales with cores (one task a shard, no
shared state) and that the disks keep up; real RxRx1 PNGs are noisier than the synthetic ones and
decode slower, so measure a plate of them before planning on it.

    python bench/ingest_throughput.py [--sample 96]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from rxsweep.data.images import decode_site
from rxsweep.data.ingest import ingest
from rxsweep.data.prepare import prepare_synthetic
from rxsweep.data.sites import load_sites
from rxsweep.data.synth.presets import PRESETS

CACHE = Path(__file__).parent / ".cache"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=96, help="sites the baseline decodes")
    args = parser.parse_args()

    import ray

    cores = os.cpu_count()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    shards = Path(prepare_synthetic(CACHE, preset="small", progress=False))  # the PNGs (not timed)
    root = json.loads((shards / "manifest.json").read_text())["input_root"]
    sites = load_sites(root)

    out = Path(tempfile.mkdtemp(prefix="rxsweep-ingest-bench-"))
    try:
        started = time.perf_counter()
        manifest = ingest(root, out / "shards", progress=False)
        wall = time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)
    ray.shutdown()
    written = manifest["counts"]["written"]

    sample = sites.sample(min(args.sample, len(sites)), random_state=0)
    started = time.perf_counter()
    for paths in sample["image_paths"]:
        decode_site(list(paths), root, None, None)
    base_per_core = len(sample) / (time.perf_counter() - started)

    per_core = written / wall / cores
    full = PRESETS["full"].n_sites  # every site of the design (the release lacks a few: ~125,500)
    print(json.dumps({
        "benchmark": "ingest_throughput", "sites": written, "image": [6, 512, 512], "cores": cores,
        "wall_s": round(wall, 1), "sites_per_s": round(written / wall, 1),
        "sites_per_core_s": round(per_core, 1), "baseline_decode_sites_per_core_s": round(base_per_core, 1),
        "ratio": round(per_core / base_per_core, 2), "full_rxrx1_sites": full,
        "projected_full_min_16_cores": round(full / (per_core * 16) / 60, 1),
        "projected_full_min_64_cores": round(full / (per_core * 64) / 60, 1),
    }))


if __name__ == "__main__":
    main()
