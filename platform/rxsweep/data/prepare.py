"""The embedded default dataset: synthetic RxRx1, generated and ingested once, reused afterwards."""

from __future__ import annotations

from pathlib import Path

from rxsweep.data.ingest import MANIFEST, ingest


def prepare_synthetic(storage: str | Path, preset: str = "tiny", layout: str = "kaggle", seed: int = 0,
                      progress: bool = True) -> Path:
    """Generate `preset` under STORAGE/data and ingest it to STORAGE/shards, unless already there.

    Both steps are idempotent, so a second call costs a manifest read. Returns the shard folder.
    """
    from rxsweep.data.synth import generate

    name = f"synthetic-{preset}-{layout}-seed{seed}"
    storage = Path(storage).expanduser().resolve()
    shards = storage / "shards" / name
    if (shards / MANIFEST).exists():
        return shards
    root = generate(storage / "data" / name, layout=layout, preset=preset, seed=seed)
    ingest(root, shards, progress=progress)
    return shards
