"""The user's own embeddings as verdict arms: ``rxsweep sweep --embeddings NAME=FILE.parquet``.

Cell Painting users often hold embeddings of a pretrained model already (CellProfiler features, a
self-supervised ViT). Each such file becomes an arm of the verdict judged against ERM as the
hand-made-features baseline is: the same split, the same linear probe
(rxsweep.training.features_baseline.linear_probe: per-plate standardisation, StandardScaler +
LogisticRegression(C=0.3, balanced) fitted on the `train` split, a table in the schema of a
trial's embeddings.parquet for the heldout_val and heldout_test sites, embedding = the
standardised vector), on the user's vectors instead of hand-made features. The verdict adds
"NAME" and "NAME + Harmony" (Harmony on its test well profiles, as ERM + Harmony).

FILE: a Parquet table with ``site_id`` (string) and ``embedding`` (a list or fixed-size list of
numbers, one vector a site, one length for all, finite), read by rxsweep.training.site_file as
``ar_weights_from`` is. It must hold every shard site of the sweep's split (train, heldout_val,
heldout_test; quarantined sites are in no shard) and no site that is in no shard; it may hold the
training experiments' `val` wells. Everything is checked before any training starts
(:func:`check_embeddings`); a sweep writes each arm once, to
SWEEP_DIR/baselines/embeddings/NAME/embeddings.parquet (rxsweep.tuning.sweep_files.embeddings_arm_path),
with the source file's path and sha256 in its metadata.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from rxsweep import locations
from rxsweep.training.features_baseline import (HELDOUT_SPLITS, SHARD_META, TRAIN_SPLIT, linear_probe,
                                                read_features_baseline, wanted_sites, with_splits_of,
                                                write_features_baseline)
from rxsweep.training.site_file import SiteFileError, check_site_ids, read_site_file, vectors

#: An arm's NAME: a short label, also a folder name (so it never starts with '.' or '-').
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,39}")
#: Names of the verdict's own arms (case-insensitive): an embeddings arm may not take one.
RESERVED = ("erm", "dann", "cdann", "features")
#: Parquet schema metadata key of an arm table's facts (name, source, sha256, n_train_sites, ...).
META_KEY = b"rxsweep.embeddings_arm"
SPLITS = (TRAIN_SPLIT, *HELDOUT_SPLITS)
_FORMAT = "a Parquet file with columns site_id (string) and embedding (a list of numbers a site, one length for all)"


class EmbeddingsSpecError(SiteFileError):
    """A bad --embeddings NAME=FILE; the message says what to change."""


def parse_embeddings(specs: Iterable[str] | Mapping[str, str | Path] | None) -> dict[str, Path]:
    """``NAME=FILE`` strings (or a {NAME: FILE} mapping) -> {NAME: FILE}, in the order given.
    Refuses (EmbeddingsSpecError) a missing '=', a bad or reserved NAME, a NAME given twice and a
    FILE that is not a file; reads nothing else (:func:`check_embeddings` reads the files)."""
    if specs is None:
        return {}
    pairs = list(specs.items()) if isinstance(specs, Mapping) else [_split_spec(s) for s in specs]
    out: dict[str, Path] = {}
    for name, file in pairs:
        name, path = str(name), Path(file).expanduser()
        if not NAME_PATTERN.fullmatch(name):
            raise EmbeddingsSpecError(
                f"--embeddings {name}={file}: NAME {name!r} must be 1-40 letters, digits or '_', '.', '+', '-' "
                "(not starting with '.', '+' or '-'), e.g. --embeddings cellprofiler=FILE.parquet")
        if name.lower() in RESERVED:
            raise EmbeddingsSpecError(f"--embeddings {name}={file}: NAME {name!r} is the name of one of the "
                                      f"verdict's own arms ({', '.join(RESERVED)}); choose another NAME")
        if name in out:
            raise EmbeddingsSpecError(f"--embeddings NAME {name!r} is given twice ({out[name]}, {path}); give each "
                                      "file its own NAME")
        if not path.is_file():
            raise EmbeddingsSpecError(f"--embeddings {name}={file}: no such file; give the path of {_FORMAT}")
        out[name] = path.resolve()
    return out


def _split_spec(spec: str) -> tuple[str, str]:
    name, sep, file = str(spec).partition("=")
    if not sep or not name or not file:
        raise EmbeddingsSpecError(f"--embeddings expects NAME=FILE.parquet, got {spec!r} (e.g. --embeddings "
                                  "cellprofiler=profiles.parquet)")
    return name, file


def check_embeddings(specs: Mapping[str, str | Path], splits: pd.DataFrame) -> None:
    """Check each file against the shards before anything trains: ``splits``: every shard site
    with its ``split`` (RunPlan.splits). Raises SiteFileError (a ValueError) naming the file and
    the fix: columns, sites in no shard, sites of the split it lacks, duplicates, vectors of
    different lengths, NaN or infinite values."""
    for name, path in parse_embeddings(specs).items():
        _read_vectors(name, path, splits["site_id"], wanted_sites(splits)["site_id"])


def embeddings_arm(shards_dir: str | Path, splits: pd.DataFrame, path: str | Path, name: str,
                   seed: int = 0) -> pd.DataFrame:
    """The arm table of the vectors in ``path`` (module doc), as
    rxsweep.training.features_baseline.features_baseline makes its own from hand-made features:
    one row a heldout_val and heldout_test site, in the embeddings schema. ``attrs``: name, source
    (the file's absolute path), sha256, n_train_sites, n_features, C, class_weight, seconds."""
    from rxsweep.data.stream import open_shards

    started = time.perf_counter()
    path = Path(path).expanduser().resolve()
    wanted = wanted_sites(splits)
    shards_dir = locations.normalize(shards_dir)
    index = open_shards(shards_dir)
    ids, x = _read_vectors(name, path, index.table["site_id"], wanted["site_id"])
    keep = index.table["site_id"].isin(set(wanted["site_id"])).to_numpy()
    sites = with_splits_of(index.table.loc[keep, SHARD_META].reset_index(drop=True), wanted, shards_dir)
    rows = pd.Series(np.arange(len(ids)), index=ids.to_numpy()).loc[sites["site_id"].to_numpy()].to_numpy()
    table = linear_probe(sites, x[rows], index.manifest["classes"], seed, what=f"the embeddings arm {name!r}")
    table.attrs = {"name": name, "source": str(path), "sha256": file_sha256(path), **table.attrs,
                   "seconds": round(time.perf_counter() - started, 3)}
    return table


def write_embeddings_arm(path: str | Path, table: pd.DataFrame) -> Path:
    """As write_features_baseline (the embeddings schema, atomically), attrs under META_KEY."""
    return write_features_baseline(path, table, meta_key=META_KEY)


def read_embeddings_arm(path: str | Path) -> pd.DataFrame | None:
    """The table write_embeddings_arm wrote (attrs restored), or None."""
    return read_features_baseline(path, meta_key=META_KEY)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_vectors(name: str, path: Path, shard_ids: pd.Series, needed: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """The file's site ids and their vectors [n, d], checked (check_embeddings)."""
    where = f"--embeddings {name}={path}"
    table, _ = read_site_file(path, where, ("embedding",))
    check_site_ids(where, table["site_id"], shard_ids, needed,
                   f"sites of the sweep's split ({', '.join(SPLITS)})",
                   missing_fix="give a vector for every shard site of those splits (quarantined sites are in no shard)")
    return table["site_id"], vectors(where, table["embedding"], table["site_id"])
