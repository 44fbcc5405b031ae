"""Getting to shards: the embedded synthetic default, or any RxRx1 folder, ingested once."""

from __future__ import annotations

from pathlib import Path

from rxsweep.data.ingest import MANIFEST, ingest


def prepare_synthetic(storage: str | Path, preset: str = "tiny", layout: str = "kaggle", seed: int = 0,
                      progress: bool = True) -> Path:
    """Generate `preset` under STORAGE/data and ingest it to STORAGE/shards, unless already there.

    Both steps are idempotent, so a second call costs a manifest read. Returns the shard folder.
    """
    from rxsweep.data.synth import GENERATOR_VERSION, generate

    # The generator's version is in the name: shards of an older generator (another design, other
    # biology) are never reused for a newer one's.
    name = f"synthetic-{preset}-{layout}-seed{seed}-v{GENERATOR_VERSION}"
    storage = Path(storage).expanduser().resolve()
    shards = storage / "shards" / name
    if (shards / MANIFEST).exists():
        return shards
    root = generate(storage / "data" / name, layout=layout, preset=preset, seed=seed)
    ingest(root, shards, progress=progress)
    return shards


def prepare_data(data: str | Path, storage: str | Path, progress: bool = True) -> Path:
    """`data` if it is a shard folder (has manifest.json); else an RxRx1 folder (Kaggle, WILDS or
    rxrx.ai layout), ingested once into STORAGE/shards/<its name> and that folder returned."""
    data = Path(data).expanduser().resolve()
    if (data / MANIFEST).exists():
        return data
    shards = Path(storage).expanduser().resolve() / "shards" / data.name
    ingest(data, shards, progress=progress)
    return shards
