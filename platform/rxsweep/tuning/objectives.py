"""What a sweep may optimise: metrics a trial reports, with their natural direction.

Per-epoch metrics come from the training loop (all-reduced over workers); end-of-trial metrics are
the batch-mixing scores of the held-out validation experiments' embeddings, computed by the trial
driver once training is done (rxsweep.metrics.embedding_scores). Held-out *test* metrics are
reported and shown, never optimised: a space that names one is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from rxsweep.metrics.mixing import SCORE_KEYS

#: metric -> mode, reported every epoch.
PER_EPOCH = {"heldout_val_acc": "max", "heldout_val_top5": "max", "heldout_val_loss": "min",
             "val_acc": "max"}
#: metric -> mode, reported once, when a trial completes.
FINAL = {"mixing": "max", **{f"mixing/{key}": "max" for key in SCORE_KEYS}}
METRICS = {**PER_EPOCH, **FINAL}


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str  # max | min

    @property
    def per_epoch(self) -> bool:
        return self.metric in PER_EPOCH


def parse_objectives(raw) -> tuple[Objective, ...]:
    """`[metric | {metric, mode}, ...]` (1 or 2 entries) -> Objectives; ValueError says what is allowed."""
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not isinstance(raw, list) or not 1 <= len(raw) <= 2:
        raise ValueError(f"must be a list of one or two metrics, got {raw!r}")
    out = []
    for item in raw:
        metric, mode = (item, None) if isinstance(item, str) else (item.get("metric"), item.get("mode"))
        if isinstance(item, dict) and set(item) - {"metric", "mode"}:
            raise ValueError(f"{item}: an objective has the keys metric and mode only")
        if isinstance(metric, str) and metric.startswith("heldout_test"):
            raise ValueError(f"{metric!r}: held-out test experiments are reported, never used to choose "
                             "anything; optimise the heldout_val_* metrics")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {list(METRICS)}")
        natural = METRICS[metric]
        if mode is not None and mode != natural:
            raise ValueError(f"{metric} is better when {'higher' if natural == 'max' else 'lower'}: "
                             f"mode must be {natural!r}, got {mode!r}")
        out.append(Objective(metric, natural))
    if len({o.metric for o in out}) != len(out):
        raise ValueError(f"{[o.metric for o in out]} names a metric twice")
    return tuple(out)
