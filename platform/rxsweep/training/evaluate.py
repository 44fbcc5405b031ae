"""Evaluation passes and the cross-worker reductions behind every reported metric.

Each worker evaluates its own share of a split; what it returns are *sums* (loss, top-1 and top-5
correct and count over all sites and over treatment sites, and correct/count of treatment sites per
cell type), which :func:`all_reduce` adds across workers
before any accuracy is formed. So the reported numbers are exact over the whole split whatever the
worker count, and rank 0's metrics (all that Tune sees) are everyone's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from rxsweep.training.recipe import autocast


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum (or max) ``t`` over all workers, in float64 on the tensor's device; returns a new tensor."""
    device = t.device
    t = t.detach().to(torch.float64).clone()
    if world_size() > 1:
        if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
            t = t.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.to(device)


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). DDP copies them from rank 0
    at the start of each training forward, but each rank's own last batch then updates its copy:
    evaluated as they are, the ranks would score one model with N sets of statistics, and the
    checkpoint (rank 0's) would not be the model whose metrics were reported."""
    if world_size() == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def all_gather_objects(obj) -> list:
    """Every worker's ``obj``, in rank order (picklable objects; used for embeddings)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


#: Per-row arrays an evaluation pass keeps when asked to collect (see embeddings.py).
COLLECTED = ("site_index", "label", "prediction", "embedding", "log_probs")


@dataclass
class EvalResult:
    sums: torch.Tensor  # [7 + 2K]: loss, top1, top5, count over all sites; top1, top5, count over
    #                      treatment sites; then K correct and K counts of treatment sites by cell type
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # when collected


@torch.inference_mode()
def evaluate(model, batches, transform, n_cell_types: int, device: torch.device,
             collect: bool = False) -> EvalResult:
    """One pass over ``batches`` (dicts from iter_torch_batches) in eval mode, without augmentation.

    ``collect``: also keep site_index, label, prediction, embedding and the log-softmax of the
    logits (float16: enough for argmax, top-k and the plate assignment; half the bytes) of every
    row, as CPU numpy arrays.
    """
    model.eval()
    head = torch.zeros(7, dtype=torch.float64, device=device)
    by_type = torch.zeros(2, n_cell_types, dtype=torch.float64, device=device)
    kept: dict[str, list[np.ndarray]] = {k: [] for k in COLLECTED}
    for batch in batches:
        labels = batch["label"].to(device)
        cell = batch["cell_type_id"].to(device)
        x = transform(batch["image"], batch["experiment_id"], batch["plate_id"], train=False)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            out = model(x)
        logits = out["logits"].float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit1 = (top[:, 0] == labels).double()
        hit5 = (top == labels[:, None]).any(dim=1).double()
        treated = batch["is_treatment"].to(device).double()
        n = torch.tensor(float(len(labels)), dtype=torch.float64, device=device)
        head += torch.stack([F.cross_entropy(logits, labels, reduction="sum").double(), hit1.sum(),
                             hit5.sum(), n, (hit1 * treated).sum(), (hit5 * treated).sum(), treated.sum()])
        by_type[0].index_add_(0, cell, hit1 * treated)
        by_type[1].index_add_(0, cell, treated)
        if collect:
            kept["site_index"].append(batch["site_index"].cpu().numpy())
            kept["label"].append(batch["label"].cpu().numpy())
            kept["prediction"].append(top[:, 0].cpu().numpy())
            kept["embedding"].append(out["embedding"].float().cpu().numpy())
            kept["log_probs"].append(F.log_softmax(logits, dim=1).to(torch.float16).cpu().numpy())
    embeddings = {}
    if collect:
        embeddings = {k: np.concatenate(v) if v else np.zeros((0,), np.int64) for k, v in kept.items()}
        if not kept["embedding"]:
            embeddings["embedding"] = np.zeros((0, model_embedding_dim(model)), np.float32)
            embeddings["log_probs"] = np.zeros((0, model_n_classes(model)), np.float16)
    return EvalResult(torch.cat([head, by_type.flatten()]), embeddings)


def model_embedding_dim(model) -> int:
    return int(getattr(model, "module", model).embedding_dim)


def model_n_classes(model) -> int:
    return int(getattr(model, "module", model).label_head.out_features)


def eval_metrics(prefix: str, sums: torch.Tensor, cell_types: list[str]) -> dict[str, float]:
    """Metrics of one split from its all-reduced sums. Accuracy is treatment-well accuracy, as in
    the RxRx1 competition: controls are a few easy classes that fill a large share of every plate
    (4 of 9 wells a plate in the tiny preset), and would otherwise make most of the figure.

        {prefix}_acc, _top5, _acc/<cell type>   treatment wells only
        {prefix}_acc_all, _acc_controls         every site; control sites only
        {prefix}_loss                           mean label loss over every site
    """
    s = sums.cpu().tolist()
    loss, top1, top5, n, treated1, treated5, treated = s[:7]
    k = len(cell_types)
    correct, count = s[7:7 + k], s[7 + k:7 + 2 * k]
    out = {f"{prefix}_acc": _ratio(treated1, treated), f"{prefix}_top5": _ratio(treated5, treated),
           f"{prefix}_acc_all": _ratio(top1, n), f"{prefix}_acc_controls": _ratio(top1 - treated1, n - treated),
           f"{prefix}_loss": _ratio(loss, n)}
    for name, c, m in zip(cell_types, correct, count):
        if m > 0:
            out[f"{prefix}_acc/{name}"] = c / m
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan
