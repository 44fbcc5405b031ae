"""Getting to shards: the embedded synthetic default, or any RxRx1 folder, ingested once.

STORAGE and the data may be local paths or URIs (rxsweep.locations). Shards bound for a URI are
written in this node's staging folder and pushed there (rxsweep.mirror); shards already at a URI
are read in place. Returns the shard folder's location as a string.
"""

from __future__ import annotations

from pathlib import Path

from rxsweep import locations
from rxsweep.data.ingest import MANIFEST, ingest


def prepare_synthetic(storage: str | Path, preset: str = "tiny", layout: str = "kaggle", seed: int = 0,
                      progress: bool = True) -> str:
    """Generate `preset` under STORAGE/data and ingest it to STORAGE/shards, unless already there.

    Both steps are idempotent, so a second call costs a manifest read. Returns the shard folder.
    """
    from rxsweep.data.synth import GENERATOR_VERSION, generate

    # The generator's version is in the name: shards of an older generator (another design, other
    # biology) are never reused for a newer one's.
    name = f"synthetic-{preset}-{layout}-seed{seed}-v{GENERATOR_VERSION}"
    storage = locations.normalize(storage)
    shards = locations.join(storage, "shards", name)
    if _is_shard_folder(shards):
        return shards
    if locations.is_uri(storage):  # the images are an intermediate: they stay in this node's staging
        from rxsweep.mirror import staging_dir

        root = generate(staging_dir(locations.join(storage, "data", name)), layout=layout, preset=preset, seed=seed)
    else:
        root = generate(Path(storage) / "data" / name, layout=layout, preset=preset, seed=seed)
    return _ingest_to(root, shards, progress)


def prepare_data(data: str | Path, storage: str | Path, progress: bool = True) -> str:
    """`data` if it is a shard folder (has manifest.json); else an RxRx1 folder (Kaggle, WILDS or
    rxrx.ai layout), ingested once into STORAGE/shards/<its name> and that folder returned."""
    data = locations.normalize(data)
    if _is_shard_folder(data):
        return data
    if locations.is_uri(data):
        raise ValueError(f"--data {data} holds no {MANIFEST}: a URI must name a shard folder. Ingest the RxRx1 "
                         "images from a local or mounted folder (`rxsweep sweep --data DIR --storage URI` "
                         "ingests them and puts the shards at the URI)")
    if any(Path(data).glob("shards/*.parquet")):
        raise ValueError(f"--data {data} is a shard folder without {MANIFEST}: its ingest did not finish, or the folder "
                         f"was copied without it. Finish it with `rxsweep ingest --data RXRX1_FOLDER --out {data}` "
                         "(finished shards are kept), or pass the RxRx1 folder itself")
    return _ingest_to(data, locations.join(locations.normalize(storage), "shards", locations.name(data)), progress)


def _is_shard_folder(location: str) -> bool:
    return locations.exists(locations.join(location, MANIFEST))


def _ingest_to(images: str | Path, shards: str, progress: bool) -> str:
    if not locations.is_uri(shards):
        ingest(images, shards, progress=progress)
        return shards
    from rxsweep.mirror import Mirror

    staged = Mirror(shards)
    ingest(images, staged.local, progress=progress, this_node_only=True)
    staged.push()
    return shards
