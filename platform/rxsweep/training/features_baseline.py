"""The hand-made-features baseline: a logistic regression on per-site intensity and texture features.

No deep learning, so a reader sees at once whether the networks learned more than hand-made
features (shared/DESIGN.md, "The science that shapes the code"). On the sites of one run's split:

    1. features   rxsweep.data.site_features of every train, heldout_val and heldout_test site,
                  read from the ingest shards one row group at a time (memory holds features, never
                  the images of a split)
    2. per plate  each feature standardised within its plate (experiment + plate): removes plate-
                  and so experiment-level shifts, as the networks' per-plate normalisation does
                  (every plate of a held-out experiment is complete, so its statistics are known;
                  a training plate's are over its `train` sites, without its few `val` wells)
    3. fit        StandardScaler + multinomial LogisticRegression(C=0.3, classes weighted by
                  inverse training frequency) on the `train` split only (the `val` wells are not
                  used; heldout_* are only scored)
    4. predict    one row a held-out site, in the schema of a trial's embeddings.parquet
                  (rxsweep.training.embeddings), so analysis scores it like a trial:
                  log_probs over every class id 0..n_classes-1 (a class absent from training gets
                  ABSENT_LOG_PROB), prediction = their argmax, and embedding = the standardised
                  feature vector the model saw (well-level mixing and replicate retrieval of
                  hand-made features, for reference)

C and the class weights were chosen on training experiments only: on the tiny preset's `train`
split (8 experiments, 2 a cell type; the sweep's split), treatment accuracy on training
experiments left out (16 folds leaving one experiment a cell type out / 8 leaving one out):
unweighted C=0.1 0.121 / 0.164; balanced C=0.1 0.220 / 0.279, C=0.3 0.234 / 0.280, C=1 0.234 /
0.287 (0.01..10 scanned). Balanced weights matter because every control is on every plate: a
positive control has 4x a treatment's training sites, and unweighted the controls win; the
networks weight their loss the same way (RunPlan.class_weights). Held-out experiments never
choose anything.

A sweep writes the table once, to SWEEP_DIR/baselines/features/embeddings.parquet
(rxsweep.tuning.sweep_files.BASELINE_EMBEDDINGS). Steps 2-4 are :func:`linear_probe`: the user's
own embeddings arms (``rxsweep sweep --embeddings``, rxsweep.training.embeddings_arm) are the same
function on the user's vectors instead of these features.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from rxsweep import fileio, locations
from rxsweep.data.image_column import shape_of, to_numpy
from rxsweep.data.ingest import FORMAT, MANIFEST
from rxsweep.data.rxrx1_facts import CHANNELS
from rxsweep.data.site_features import feature_names, marker_channels, site_features
from rxsweep.metrics.embedding_scores import prediction_accuracies
from rxsweep.training.embeddings import COLUMNS, SITE_COLUMNS, fixed_size_list

TRAIN_SPLIT = "train"
HELDOUT_SPLITS = ("heldout_val", "heldout_test")
#: Regularisation of the logistic regression (inverse L2 strength) and its class weights (inverse
#: training frequency); see the module docstring for how they were chosen.
C = 0.3
CLASS_WEIGHT = "balanced"
MAX_ITER = 3000
#: log-probability of a class the model never saw in training (finite: float16 holds it, and
#: exp() of it is exactly 0 in every float type).
ABSENT_LOG_PROB = -1.0e4
#: Added to a feature's within-plate standard deviation (a feature constant on a plate becomes 0).
PLATE_EPS = 1e-6
#: Parquet schema metadata key of the baseline's own facts (n_train_sites, features, C, seconds).
META_KEY = b"rxsweep.features_baseline"
SHARD_META = ["site_id", "well_id", "experiment", "plate", "well", "cell_type", "well_type", "label"]


def features_baseline(shards_dir: str | Path, splits: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Fit on the `train` split of ``splits``, predict every heldout_val and heldout_test site.

    ``splits``: one row a site with ``site_id`` and ``split`` (a run's splits.parquet, or
    RunPlan.splits). Returns one row a held-out site, sorted by split then site_id, with the
    columns of rxsweep.training.embeddings.COLUMNS; ``log_probs`` and ``embedding`` hold one
    float32 array a row. ``attrs``: n_train_sites, n_features, feature_names, C, seconds.
    """
    started = time.perf_counter()
    wanted = wanted_sites(splits)
    shards_dir = locations.normalize(shards_dir)
    manifest = _manifest(shards_dir)
    sites, x = _read_features(shards_dir, manifest, set(wanted["site_id"]))
    table = linear_probe(with_splits_of(sites, wanted, shards_dir), x, manifest["classes"], seed,
                         what="the features baseline")
    table.attrs.update(feature_names=feature_names(_channel_names(manifest)),
                       seconds=round(time.perf_counter() - started, 3))
    return table


def wanted_sites(splits: pd.DataFrame) -> pd.DataFrame:
    """site_id and split of the sites of ``splits`` a linear probe reads (train, heldout_val,
    heldout_test); a ValueError for splits without those columns or with a site twice."""
    missing = [c for c in ("site_id", "split") if c not in splits.columns]
    if missing:
        raise ValueError(f"splits lack the columns {missing} (expected a run's splits.parquet)")
    twice = splits["site_id"][splits["site_id"].duplicated()]
    if len(twice):
        raise ValueError(f"splits name {len(twice)} sites twice, e.g. {twice.iloc[0]!r}")
    return splits.loc[splits["split"].isin((TRAIN_SPLIT, *HELDOUT_SPLITS)), ["site_id", "split"]]


def with_splits_of(sites: pd.DataFrame, wanted: pd.DataFrame, shards_dir: str) -> pd.DataFrame:
    """``sites`` (shard rows, SHARD_META columns) with the ``split`` of ``wanted``; a ValueError
    when a wanted site is not among them."""
    sites = sites.merge(wanted, on="site_id", how="left", validate="one_to_one")
    if len(sites) < len(wanted):
        absent = sorted(set(wanted["site_id"]) - set(sites["site_id"]))
        raise ValueError(f"{len(absent)} sites of the splits are not in the shards of {shards_dir}, "
                         f"e.g. {absent[:3]}: splits of another data set?")
    return sites


def linear_probe(sites: pd.DataFrame, x: np.ndarray, classes: list[int], seed: int = 0,
                 what: str = "a linear probe") -> pd.DataFrame:
    """Steps 2-4 of the module doc on any vectors: ``x`` [n, F] a row of ``sites`` (SHARD_META
    columns and ``split``; rows in shard order). Standardised per plate, StandardScaler +
    LogisticRegression(C, CLASS_WEIGHT) fitted on the `train` rows, a table in the embeddings
    schema of the heldout_val and heldout_test rows (log_probs over 0..max(classes, labels),
    prediction, embedding = the standardised vector). ``classes``: the shards' class ids
    (manifest). attrs: n_train_sites, n_features, C, class_weight. The features baseline and
    the user's embeddings arms (rxsweep.training.embeddings_arm) are this function on their vectors."""
    x = standardise_per_plate(x, sites["experiment"].astype(str) + "/" + sites["plate"].astype(str))

    train = (sites["split"] == TRAIN_SPLIT).to_numpy()
    labels = sites["label"].to_numpy(np.int64)
    if not train.any():
        raise ValueError(f"the splits have no `train` site to fit {what} on")
    classifier = LogisticRegression(C=C, class_weight=CLASS_WEIGHT, max_iter=MAX_ITER, random_state=seed)
    model = make_pipeline(StandardScaler(), classifier)
    model.fit(x[train], labels[train])

    held = np.flatnonzero(sites["split"].isin(HELDOUT_SPLITS).to_numpy())
    n_classes = max([*classes, int(labels.max())]) + 1
    log_probs = class_log_probs(model, x[held], n_classes)
    table = sites.iloc[held][[*SITE_COLUMNS, "split", "label"]].assign(
        prediction=log_probs.argmax(axis=1).astype(np.int64),
        embedding=list(model[:-1].transform(x[held]).astype(np.float32)),
        log_probs=list(log_probs))
    table = table.astype({"plate": np.int64, "label": np.int64})
    table = table.sort_values(["split", "site_id"], kind="stable").reset_index(drop=True)[COLUMNS]
    table.attrs = {"n_train_sites": int(train.sum()), "n_features": int(x.shape[1]), "C": C,
                   "class_weight": CLASS_WEIGHT}
    return table


def standardise_per_plate(x: np.ndarray, plate: pd.Series | np.ndarray) -> np.ndarray:
    """``x`` [n, F] with each column centred and scaled to unit sd within each value of ``plate``."""
    out = np.empty_like(x, dtype=np.float64)
    keys, inverse = np.unique(np.asarray(plate), return_inverse=True)
    for k in range(len(keys)):
        rows = inverse == k
        out[rows] = (x[rows] - x[rows].mean(0)) / (x[rows].std(0) + PLATE_EPS)
    return out


def class_log_probs(model: Pipeline, x: np.ndarray, n_classes: int) -> np.ndarray:
    """float32 [n, n_classes]: the model's log-probabilities, in class-id order, with
    ABSENT_LOG_PROB for a class it never saw (its own classes still sum to 1)."""
    scores = model.decision_function(x)
    if scores.ndim == 1:  # two classes: the score is the log-odds of the second
        scores = np.stack([np.zeros_like(scores), scores], axis=1)
    out = np.full((len(x), n_classes), ABSENT_LOG_PROB, dtype=np.float32)
    out[:, model.classes_.astype(np.int64)] = log_softmax(scores, axis=1)
    return out


def features_baseline_scores(table: pd.DataFrame) -> dict[str, float]:
    """Accuracy of the baseline's predictions: ``{split}_acc`` over treatment wells (as the trials'
    accuracy, rxsweep.metrics.embedding_scores), ``{split}_acc_all`` over every row (NaN for a
    split with no rows), and ``n_train_sites`` (from the table's attrs; NaN if unknown)."""
    scores: dict[str, float] = {}
    for split in HELDOUT_SPLITS:
        scores.update(prediction_accuracies(table, split))
    n_train = table.attrs.get("n_train_sites")
    scores["n_train_sites"] = int(n_train) if n_train is not None else math.nan
    return scores


def write_features_baseline(path: str | Path, table: pd.DataFrame, meta_key: bytes = META_KEY) -> Path:
    """``path`` (a sweep's: rxsweep.tuning.sweep_files.BASELINE_EMBEDDINGS), atomically, in the schema of a trial's
    embeddings.parquet (embedding fixed_size_list<float32>, log_probs fixed_size_list<float16>);
    the table's attrs go into the schema metadata (under ``meta_key``). Returns the path."""
    frame = table[COLUMNS[:-2]].astype({"plate": np.int64, "label": np.int64, "prediction": np.int64})
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    dim = len(table["embedding"].iloc[0]) if len(table) else int(table.attrs.get("n_features", 0))
    n_classes = len(table["log_probs"].iloc[0]) if len(table) else 0
    arrow = arrow.append_column("embedding", fixed_size_list(_matrix(table["embedding"], dim), pa.float32()))
    arrow = arrow.append_column("log_probs", fixed_size_list(_matrix(table["log_probs"], n_classes), pa.float16()))
    meta = {**(arrow.schema.metadata or {}), meta_key: json.dumps(table.attrs).encode()}
    arrow = arrow.select(COLUMNS).replace_schema_metadata(meta)
    path = Path(path)
    with fileio.atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)
    return path


def read_features_baseline(path: str | Path, meta_key: bytes = META_KEY) -> pd.DataFrame | None:
    """The table write_features_baseline wrote (arrays as numpy, attrs restored), or None."""
    path = Path(path)
    if not path.is_file():
        return None
    arrow = pq.read_table(path)
    table = arrow.to_pandas()
    raw = (arrow.schema.metadata or {}).get(meta_key)
    table.attrs = json.loads(raw) if raw else {}
    return table


# ------------------------------------------------------------------------------------- internals
def _manifest(shards_dir: str) -> dict:
    path = locations.join(shards_dir, MANIFEST)
    if not locations.exists(path):
        raise FileNotFoundError(f"{shards_dir} has no {MANIFEST}: not a completed ingest")
    manifest = locations.read_json(path)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, this rxsweep reads {FORMAT!r}")
    return manifest


def _channel_names(manifest: dict) -> list[str]:
    """The manifest's names (LoadData: its own, e.g. OrigDNA); shards ingested before it recorded
    them are RxRx1's."""
    if manifest.get("channels"):
        return list(manifest["channels"])
    n = int(manifest["n_channels"])
    return list(CHANNELS[:n]) if n <= len(CHANNELS) else [f"c{i}" for i in range(n)]


def _read_features(shards_dir: str, manifest: dict, wanted: set[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Site columns and features of the ``wanted`` sites, a shard row group at a time (a shard
    without a wanted site is never decompressed beyond its site_id column)."""
    markers = marker_channels(_channel_names(manifest))  # the nucleus and cell-body channels
    frames, features = [], []
    for shard in manifest["shards"]:
        parquet = locations.parquet_file(locations.join(shards_dir, shard["file"]))
        ids = parquet.read(columns=["site_id"]).column(0).to_numpy(zero_copy_only=False)
        keep = np.fromiter((s in wanted for s in ids), bool, len(ids))
        if not keep.any():
            continue
        shape = shape_of(parquet.schema_arrow.field("image"))
        start = 0
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            rows = np.flatnonzero(keep[start:start + size])
            start += size
            if not len(rows):
                continue
            part = parquet.read_row_group(group, columns=[*SHARD_META, "image"])
            if len(rows) < size:
                part = part.take(pa.array(rows))
            images = to_numpy(part.column("image"), shape)
            features += [site_features(image, *markers) for image in images]
            frames.append(part.drop_columns(["image"]).to_pandas())
    if not frames:
        raise ValueError(f"none of the splits' sites is in the shards of {shards_dir}")
    return pd.concat(frames, ignore_index=True), np.stack(features)


def _matrix(column: pd.Series, width: int) -> np.ndarray:
    return np.stack(column.to_list()) if len(column) else np.zeros((0, width))
