"""Held-out embeddings: the final model's view of experiments it never trained on.

One row a site of the held-out validation and test experiments, written by rank 0 as
``embeddings.parquet`` into the final checkpoint (so Ray persists it with the model that made it)
and copied by the CLI driver to ``RUN_DIR/embeddings.parquet``. Columns:

    site_id, well_id, experiment, well,        string
    cell_type, well_type
    plate                                      int64
    split                                      string: heldout_val | heldout_test
    label, prediction                          int64 (siRNA class ids)
    embedding                                  fixed_size_list<float32>[D]
    log_probs                                  fixed_size_list<float16>[n_classes]: log-softmax of
                                               the logits (top-k and plate-constrained accuracy)

Rows are sorted by split then site_id, so two runs' files line up row for row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SITE_COLUMNS = ["site_id", "well_id", "experiment", "plate", "well", "cell_type", "well_type"]
COLUMNS = [*SITE_COLUMNS, "split", "label", "prediction", "embedding", "log_probs"]


def embeddings_table(parts: dict[str, list[dict[str, np.ndarray]]], sites: pd.DataFrame,
                     dim: int, n_classes: int) -> pa.Table:
    """``parts``: split -> every worker's collected arrays (evaluate.COLLECTED);
    ``sites``: the shard index table (site_index is its row label)."""
    frames, vectors, log_probs = [], [], []
    for split, per_worker in parts.items():
        for part in per_worker:
            if len(part["site_index"]) == 0:
                continue
            rows = sites.loc[part["site_index"], SITE_COLUMNS]
            frame = rows.reset_index(drop=True).assign(
                split=split, label=part["label"].astype(np.int64),
                prediction=part["prediction"].astype(np.int64))
            frames.append(frame)
            vectors.append(part["embedding"].astype(np.float32).reshape(-1, dim))
            log_probs.append(part["log_probs"].astype(np.float16).reshape(-1, n_classes))
    if not frames:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS[:-2]})
        matrix, logp = np.zeros((0, dim), np.float32), np.zeros((0, n_classes), np.float16)
    else:
        frame = pd.concat(frames, ignore_index=True)
        matrix, logp = np.concatenate(vectors), np.concatenate(log_probs)
    order = np.lexsort((frame["site_id"].to_numpy(dtype=str), frame["split"].to_numpy(dtype=str)))
    frame, matrix, logp = frame.iloc[order].reset_index(drop=True), matrix[order], logp[order]
    table = pa.Table.from_pandas(frame.astype({"plate": np.int64, "label": np.int64,
                                               "prediction": np.int64}), preserve_index=False)
    table = table.append_column("embedding", fixed_size_list(matrix, pa.float32()))
    return table.append_column("log_probs", fixed_size_list(logp, pa.float16())).select(COLUMNS)


def fixed_size_list(matrix: np.ndarray, value_type: pa.DataType) -> pa.FixedSizeListArray:
    """A [n, width] matrix as an Arrow fixed_size_list<value_type>[width] column."""
    flat = pa.array(np.ascontiguousarray(matrix, dtype=value_type.to_pandas_dtype()).reshape(-1), type=value_type)
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


def write_embeddings(table: pa.Table, path: str | Path) -> None:
    pq.write_table(table, str(path))
