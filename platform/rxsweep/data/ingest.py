"""Ingest: decode every site's PNGs once, into Parquet shards, with Ray Data.

    SHARDS/
      shards/<EXP>_P<plate>_<part>.parquet   site-table columns + image uint8 [C, H, W]
      shards/<...>.done.json                 per-shard marker (written last): written, quarantined, sums
      plan.parquet, params.json              what this ingest will write (makes it resumable)
      stats.parquet                          per-channel mean/std per plate and experiment, all / controls
      quarantine.csv                         site_id, path, reason: every site that was not written
      manifest.json                          written last: counts, hashes. Its presence = complete.

Running it again with the same arguments does nothing; an ingest killed midway and run again redoes
only the shards without a marker, so every site ends up in exactly one shard or in quarantine.
Memory is bounded by shard size x concurrent tasks, never by the dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from rxsweep import __version__
from rxsweep.data import shard_writer, tiff_images
from rxsweep.data.images import probe_native_size
from rxsweep.data.ingest_outputs import reconcile, write_outputs
from rxsweep.data.sites import load_sites_and_rejected
from rxsweep import console, fileio

MANIFEST = "manifest.json"
FORMAT = "rxsweep-shards/2"  # 2: images as fixed-size binary (image_column.py)
#: Raw image bytes per shard. Bounds a decode task's memory (about 3x this) and gives Ray Data
#: enough tasks to keep every core busy on a small dataset.
SHARD_TARGET_BYTES = 64 * 2**20
PROGRESS_EVERY_S = 5.0
SITE_TABLE_MARKER = "site table"  # the quarantine of rows the layout could not use


@dataclass(frozen=True)
class IngestParams:
    """What determines the shards' content; a second ingest into the same folder must match."""
    root: str
    layout: str
    image_size: int | None  # None keeps the native size
    site_table_sha256: str


def ingest(data: str | os.PathLike, out: str | os.PathLike, image_size: int | None = None,
           layout: str = "auto", max_sites_per_shard: int | None = None, progress: bool = True,
           this_node_only: bool = False) -> dict:
    """Ingest an RxRx1 folder into `out`; returns the manifest. Validates everything it can first.
    ``this_node_only``: decode on this node's CPUs only (``out`` is a folder other nodes do not
    see, e.g. the staging folder of shards bound for a URI)."""
    if image_size is not None and image_size < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
    sites, rejected = load_sites_and_rejected(data, layout)
    root, n_channels, channels = sites.attrs["root"], sites.attrs["n_channels"], sites.attrs["channels"]
    params = IngestParams(root, sites.attrs["layout"], image_size, _table_hash(sites))
    out = Path(out).expanduser().resolve()
    manifest_file = out / MANIFEST
    if manifest_file.exists():
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("format") != FORMAT:
            raise FileExistsError(f"{out} holds shards of format {manifest.get('format')!r}, written by an older "
                                  f"rxsweep; this one writes {FORMAT!r}: delete that folder or choose another --out")
        if manifest.get("params") == asdict(params):
            _say(progress, f"{out} is up to date ({manifest['counts']['written']} sites); nothing to do")
            return manifest
        raise FileExistsError(
            f"{out} already holds an ingest with other parameters ({manifest.get('params')}); "
            "choose another --out or delete that folder"
        )
    _check_resumable(out, params)
    native = probe_native_size(list(sites["image_paths"]), root)
    plan = _plan_shards(sites, n_channels, image_size or native, max_sites_per_shard)
    scaling = _intensity_scaling(plan, n_channels, progress)
    _write_plan(out, params, plan)
    pending = _pending_shards(out, plan)
    _say(progress, f"ingest: {len(sites):,} sites in {plan['shard'].nunique()} shards, "
                   f"{len(pending)} to write -> {out}")
    started = time.perf_counter()
    if pending:
        _run_ray(out, pending, root, native, image_size, progress, this_node_only)
    markers = _read_markers(out, plan)
    if len(rejected):  # rows the layout could not use: quarantined with their reason, like bad images
        markers[SITE_TABLE_MARKER] = _rejected_marker(rejected)
        sites = pd.concat([sites, rejected[list(sites.columns)]], ignore_index=True)
    counts = reconcile(sites, markers)
    manifest = {
        "format": FORMAT,
        "created_by": f"rxsweep {__version__}",
        "params": asdict(params),
        "input_root": root,
        "layout": params.layout,
        "n_channels": n_channels,
        "channels": channels,
        "native_size": native,
        "image_size": image_size or native,
        "counts": counts,
        "classes": sorted(int(v) for v in sites["label"].unique() if v >= 0),
        "shards": [
            {"file": f"shards/{m['shard']}", "sha256": m["sha256"], "rows": len(m["written"])}
            for m in markers.values() if m["shard"]
        ],
        "seconds": round(time.perf_counter() - started, 2),
    }
    if scaling:
        manifest["intensity_scaling"] = {"rule": tiff_images.RULE, "plates": scaling}
    write_outputs(out, markers, channels)
    fileio.write_text(manifest_file, json.dumps(manifest, indent=2))  # last: says the ingest is complete
    _say(progress, f"ingest: {counts['written']:,} sites written, {counts['quarantined']:,} quarantined "
                   f"(see {out / 'quarantine.csv'}) in {manifest['seconds']} s")
    return manifest


def _intensity_scaling(plan: pd.DataFrame, n_channels: int, progress: bool) -> dict:
    """16-bit TIFFs: each plate's (lo, hi) a channel (tiff_images.py), into the plan's rows so a
    shard's task scales by them. Deterministic, so a resumed ingest computes the same again."""
    if not tiff_images.is_tiff(plan["image_paths"].iloc[0][0]):
        return {}
    _say(progress, f"ingest: scaling 16-bit images by each plate's controls ({plan['plate'].size:,} sites)")
    scaling = tiff_images.plate_ranges(plan, n_channels)
    key = plan["experiment"] + "/" + plan["plate"].astype(str)
    plan["intensity_lo"] = key.map(lambda k: scaling[k]["lo"])
    plan["intensity_hi"] = key.map(lambda k: scaling[k]["hi"])
    return scaling


def _rejected_marker(rejected: pd.DataFrame) -> dict:
    return {"experiment": None, "plate": None, "shard": None, "sha256": None, "written": [],
            "quarantined": rejected[["site_id", "path", "reason"]].to_dict("records"),
            "sums": {"all": None, "controls": None}}


def _table_hash(sites: pd.DataFrame) -> str:
    """Content hash of the site table, relative to the root, so a moved dataset hashes the same."""
    root = sites.attrs["root"]
    digest = hashlib.sha256()
    for row in sites.drop(columns=["image_paths"]).itertuples(index=False):
        digest.update(repr(tuple(row)).encode())
    for paths in sites["image_paths"]:
        digest.update("|".join(os.path.relpath(p, root) for p in paths).encode())
    return digest.hexdigest()


def _check_resumable(out: Path, params: IngestParams) -> None:
    params_file = out / "params.json"
    if params_file.exists() and json.loads(params_file.read_text()) != asdict(params):
        raise FileExistsError(
            f"{out} holds an unfinished ingest with other parameters; run it with those parameters "
            "to finish it, or choose another --out"
        )
    if out.exists() and not params_file.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and is not an rxsweep ingest; choose an empty --out")


def _plan_shards(sites: pd.DataFrame, n_channels: int, size: int, max_sites: int | None) -> pd.DataFrame:
    """Assign each site to a shard: slices of one plate, at most SHARD_TARGET_BYTES of pixels each."""
    per_shard = max_sites or max(1, SHARD_TARGET_BYTES // (n_channels * size * size))
    plan = sites.copy()
    position = plan.groupby(["experiment", "plate"]).cumcount()
    plan["shard"] = (plan["experiment"] + "_P" + plan["plate"].astype(str) + "_"
                     + (position // per_shard).map("{:03d}".format) + ".parquet")
    return plan


def _write_plan(out: Path, params: IngestParams, plan: pd.DataFrame) -> None:
    (out / "shards").mkdir(parents=True, exist_ok=True)
    for leftover in (out / "shards").glob(f"*{fileio.TMP_SUFFIX}"):  # from a task killed mid-write
        leftover.unlink()
    fileio.write_text(out / "params.json", json.dumps(asdict(params), indent=2))
    with fileio.atomic_path(out / "plan.parquet") as tmp:
        plan.to_parquet(tmp, index=False)


def _pending_shards(out: Path, plan: pd.DataFrame) -> list[str]:
    return [s for s in plan["shard"].unique()
            if not shard_writer.marker_path(out / "shards" / s).exists()]


def _run_ray(out: Path, pending: list[str], root: str, native: int, image_size: int | None,
             progress: bool, this_node_only: bool) -> None:
    import ray

    from rxsweep.cluster import init_ray

    init_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    plan_file = str(out / "plan.parquet")
    shards_dir = out / "shards"

    def write_one(item: dict) -> dict:
        rows = pd.read_parquet(plan_file, filters=[("shard", "==", item["shard"])]).to_dict("records")
        marker = shard_writer.write_shard(rows, shards_dir / item["shard"], root, native, image_size)
        return {"shard": item["shard"], "written": len(marker["written"]),
                "quarantined": len(marker["quarantined"])}

    dataset = ray.data.from_items([{"shard": s} for s in pending], override_num_blocks=len(pending))
    done = written = quarantined = 0
    last_report = time.monotonic()
    # Ray's own label of every node's id (what Ray Train pins its controller with).
    here = {"ray.io/node-id": ray.get_runtime_context().get_node_id()} if this_node_only else None
    for result in dataset.map(write_one, num_cpus=1, label_selector=here).iter_rows():
        done, written, quarantined = done + 1, written + result["written"], quarantined + result["quarantined"]
        # Ray Data draws a bar on a terminal; logs (ray job logs, CI) get a line every few seconds.
        if done == len(pending) or time.monotonic() - last_report > PROGRESS_EVERY_S:
            last_report = time.monotonic()
            _say(progress and not sys.stderr.isatty(),
                 f"ingest: {done}/{len(pending)} shards, {written:,} sites written, {quarantined:,} quarantined")


def _read_markers(out: Path, plan: pd.DataFrame) -> dict[str, dict]:
    markers = {}
    for shard in plan["shard"].unique():
        path = shard_writer.marker_path(out / "shards" / shard)
        if not path.exists():
            raise RuntimeError(f"shard {shard} has no completion marker after ingest; run ingest again")
        markers[shard] = json.loads(path.read_text())
    return markers


def _say(enabled: bool, message: str) -> None:
    if enabled:  # on the terminal's stderr, also while a sweep sends Ray's output to its log
        console.say(message)
