"""DANN: backbone -> [embedding projection] -> label head, and -> GRL(λ) -> domain head.

Which column is the domain (``experiment`` or ``plate``) is decided by the training code, which
also maps site-table values to integer ids; this module only needs ``n_domains``. ``none`` is
plain ERM: no domain head, ``domain_logits`` is None.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn as nn

from .grl import GradientReversal
from .heads import DomainHead

DOMAIN_LABELS = ("experiment", "plate", "none")


class DANN(nn.Module):
    """Domain-adversarial network (Ganin et al. 2016).

    Args:
        backbone: module with ``forward_features(x) -> [N, num_features]`` and ``num_features``.
        n_classes: label classes (1,108 siRNAs on RxRx1; 1,139 with controls).
        domain_label: one of ``DOMAIN_LABELS``.
        n_domains: number of domain ids (required, >= 2, unless ``domain_label == "none"``,
            where it is ignored).
        embedding_dim: ``None`` -> the embedding is the backbone features; an int -> a projection
            Linear -> BatchNorm1d -> ReLU to that size (the "bottleneck" of common DANN code;
            BatchNorm1d needs batches of >= 2 in training mode).
        domain_width, domain_depth, domain_dropout: :class:`DomainHead` shape.
        lambd: initial GRL λ (usually set every step with :meth:`set_lambda`).

    ``forward(x)`` returns ``{"logits": [N, n_classes], "domain_logits": [N, n_domains] or None,
    "embedding": [N, D]}``. The embedding is what the analysis code scores for batch mixing.
    """

    def __init__(
        self,
        backbone: nn.Module,
        n_classes: int,
        domain_label: str = "experiment",
        n_domains: Optional[int] = None,
        embedding_dim: Optional[int] = None,
        domain_width: int = 1024,
        domain_depth: int = 2,
        domain_dropout: float = 0.5,
        lambd: float = 1.0,
    ) -> None:
        super().__init__()
        if domain_label not in DOMAIN_LABELS:
            raise ValueError(f"unknown domain_label {domain_label!r}; known: {list(DOMAIN_LABELS)}")
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
            raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
        self.backbone = backbone
        self.domain_label = domain_label
        in_dim = int(backbone.num_features)
        if embedding_dim is None:
            self.embed: nn.Module = nn.Identity()
            self.embedding_dim = in_dim
        else:
            if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
                raise ValueError(f"embedding_dim must be None or a positive int, got {embedding_dim!r}")
            self.embed = nn.Sequential(
                nn.Linear(in_dim, embedding_dim), nn.BatchNorm1d(embedding_dim), nn.ReLU(inplace=True)
            )
            self.embedding_dim = embedding_dim
        self.label_head = nn.Linear(self.embedding_dim, n_classes)
        self.grl = GradientReversal(lambd)
        self.domain_head: Optional[DomainHead] = None
        if domain_label != "none":
            if n_domains is None:
                raise ValueError(f"domain_label={domain_label!r} needs n_domains")
            self.domain_head = DomainHead(
                self.embedding_dim, n_domains, domain_width, domain_depth, domain_dropout
            )

    def set_lambda(self, lambd: float) -> None:
        """Set the gradient reversal strength λ (a float) for the next forward passes."""
        self.grl.set_lambda(lambd)

    @property
    def lambd(self) -> float:
        return self.grl.lambd

    def forward(self, x: torch.Tensor) -> Dict[str, Optional[torch.Tensor]]:
        emb = self.embed(self.backbone.forward_features(x))
        logits = self.label_head(emb)
        domain_logits = None
        if self.domain_head is not None:
            domain_logits = self.domain_head(self.grl(emb))
        return {"logits": logits, "domain_logits": domain_logits, "embedding": emb}
