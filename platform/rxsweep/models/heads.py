"""Heads that attach to backbone features, and the domain loss."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class DomainHead(nn.Module):
    """Domain discriminator MLP: ``depth`` x (Linear(width) -> ReLU -> Dropout) -> Linear(n_domains).

    Defaults follow Ganin et al. 2016 (two hidden layers of 1024, dropout 0.5). ``depth=0`` is a
    linear discriminator. Input [N, in_dim] -> logits [N, n_domains].
    """

    def __init__(self, in_dim: int, n_domains: int, width: int = 1024, depth: int = 2,
                 dropout: float = 0.5) -> None:
        super().__init__()
        for name, v, lo in (("in_dim", in_dim, 1), ("n_domains", n_domains, 2),
                            ("width", width, 1), ("depth", depth, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        prev = in_dim
        for _ in range(depth):
            layers += [nn.Linear(prev, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            prev = width
        layers.append(nn.Linear(prev, n_domains))
        self.net = nn.Sequential(*layers)
        self.n_domains = n_domains

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def domain_loss_per_site(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Per-site [N] cross-entropy of domain logits [N, K] against domain ids [N], with environment label
    smoothing (ELS; Zhang et al., ICLR 2023, "Free Lunch for Domain Adversarial Training:
    Environment Label Smoothing", arXiv:2302.00194).

    The target distribution puts ``1 - smoothing`` on the true domain and ``smoothing / (K - 1)``
    on each other domain, as in the ELS reference code, so a discriminator is never rewarded for
    full confidence. ``smoothing = 0`` is plain cross-entropy. (PyTorch's
    ``cross_entropy(label_smoothing=e)`` spreads e over all K classes including the true one; it
    equals this loss with ``smoothing = e * (K - 1) / K``.)
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, K], got shape {tuple(logits.shape)}")
    k = logits.shape[1]
    if k < 2:
        raise ValueError(f"logits need K >= 2 domains, got {k}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if target.shape != logits.shape[:1]:
        raise ValueError(f"target must be [N]={logits.shape[0]}, got shape {tuple(target.shape)}")
    if smoothing == 0.0:
        return F.cross_entropy(logits, target, reduction="none")
    log_p = F.log_softmax(logits, dim=1)
    soft = torch.full_like(log_p, smoothing / (k - 1))
    soft.scatter_(1, target.unsqueeze(1), 1.0 - smoothing)
    return -(soft * log_p).sum(dim=1)


def domain_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """The mean of :func:`domain_loss_per_site` (DANN's domain loss)."""
    return domain_loss_per_site(logits, target, smoothing).mean()
