"""The ingest's summary files, computed from the per-shard markers: counts, quarantine, statistics."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from rxsweep.data.rxrx1_facts import CHANNELS

QUARANTINE_COLUMNS = ["site_id", "path", "reason"]


def reconcile(sites: pd.DataFrame, markers: dict[str, dict]) -> dict:
    """Check that every listed site was written or quarantined exactly once; return the counts.

    Raises RuntimeError (before the manifest is written, so the ingest is not marked complete) if a
    site is missing, repeated or unknown: that would be a bug, and it must not pass silently.
    """
    written = [s for m in markers.values() for s in m["written"]]
    quarantined = [q["site_id"] for m in markers.values() for q in m["quarantined"]]
    seen = Counter(written + quarantined)
    listed = set(sites["site_id"])
    repeated = [s for s, n in seen.items() if n > 1]
    missing = listed - seen.keys()
    unknown = seen.keys() - listed
    if repeated or missing or unknown:
        raise RuntimeError(
            f"ingest counts do not reconcile: {len(missing)} listed sites missing (e.g. {sorted(missing)[:3]}), "
            f"{len(repeated)} written twice (e.g. {repeated[:3]}), {len(unknown)} unknown (e.g. {sorted(unknown)[:3]})"
        )
    assert len(sites) == len(written) + len(quarantined)
    status = pd.Series("written", index=pd.Index(written + quarantined, name="site_id"))
    status.iloc[len(written):] = "quarantined"
    table = sites.set_index("site_id")[["experiment", "plate"]].join(status.rename("status"))
    by_experiment = _count(table, ["experiment"])
    by_plate = _count(table, ["experiment", "plate"])
    return {
        "listed": len(sites), "written": len(written), "quarantined": len(quarantined),
        "by_experiment": by_experiment, "by_plate": by_plate,
    }


def _count(table: pd.DataFrame, keys: list[str]) -> dict:
    counts = table.groupby(keys + ["status"]).size().unstack(fill_value=0)
    out = {}
    for key, row in counts.iterrows():
        name = "/".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        written, quarantined = int(row.get("written", 0)), int(row.get("quarantined", 0))
        out[name] = {"listed": written + quarantined, "written": written, "quarantined": quarantined}
    return out


def write_outputs(out: Path, markers: dict[str, dict], channels: int | list[str]) -> None:
    """quarantine.csv and stats.parquet. ``channels``: their names, or how many (RxRx1's names)."""
    rows = [q for m in markers.values() for q in m["quarantined"]]
    pd.DataFrame(rows, columns=QUARANTINE_COLUMNS).sort_values("site_id").to_csv(out / "quarantine.csv", index=False)
    channel_stats(markers, channels).to_parquet(out / "stats.parquet", index=False)


def channel_stats(markers: dict[str, dict], channels: int | list[str]) -> pd.DataFrame:
    """Per-channel mean and std (uint8 units) per plate and per experiment, over all wells and over
    control wells only. Built from exact integer sums, so it equals a one-pass computation."""
    names = list(channels) if not isinstance(channels, int) else list(CHANNELS[:channels])
    n_channels = len(names)
    groups: dict[tuple, dict] = {}
    for marker in markers.values():
        for level, key in (("plate", (marker["experiment"], marker["plate"])),
                           ("experiment", (marker["experiment"], 0))):
            for subset, sums in marker["sums"].items():
                if sums is None:
                    continue
                acc = groups.setdefault((level, *key, subset), {
                    "n_sites": 0, "n_pixels": 0,
                    "sum": np.zeros(n_channels, dtype=np.int64), "sumsq": np.zeros(n_channels, dtype=np.int64)})
                acc["n_sites"] += sums["n_sites"]
                acc["n_pixels"] += sums["n_pixels"]
                acc["sum"] += np.asarray(sums["sum"], dtype=np.int64)
                acc["sumsq"] += np.asarray(sums["sumsq"], dtype=np.int64)
    records = []
    for (level, experiment, plate, subset), acc in sorted(groups.items()):
        mean = acc["sum"] / acc["n_pixels"]
        var = np.maximum(acc["sumsq"] / acc["n_pixels"] - mean**2, 0.0)
        for channel in range(n_channels):
            records.append({
                "level": level, "experiment": experiment, "plate": plate, "subset": subset,
                "channel": channel, "channel_name": names[channel],
                "mean": float(mean[channel]), "std": float(np.sqrt(var[channel])),
                "n_sites": acc["n_sites"],
            })
    return pd.DataFrame.from_records(records)
