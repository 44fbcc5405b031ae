"""DANN: backbone -> [embedding projection] -> label head, and -> GRL(λ) -> domain head.

CDANN (Li et al., ECCV 2018; DomainBed's ``CDANN``) conditions the domain head on the class: it
sees GRL(embedding) + an embedding of the site's label. The head can then no longer tell domains
apart by their label mix (on RxRx1 each plate holds one of four siRNA groups), so the features are
pushed to hide only what differs between domains *within* a class: the batch.

How rxsweep's CDANN relates to DomainBed's (``domainbed/algorithms.py``, ``AbstractDANN`` with
``conditional=True, class_balance=True``):

- Same: the conditioning (an ``nn.Embedding(n_classes, D)`` of the label added to the features the
  discriminator sees, trained with the discriminator), and a class-balanced domain loss
  (:func:`adversary_domain_loss`).
- Different: DomainBed alternates ``d_steps_per_g_step`` discriminator steps with one generator
  step (separate Adam optimisers, ``gen_loss = classifier_loss - lambda * disc_loss``) and adds a
  gradient penalty on the discriminator's input gradient; rxsweep takes one step per batch through
  a gradient-reversal layer (λ on a schedule, the domain head's learning rate a multiple of the
  rest) with no gradient penalty.
- Class weights: DomainBed weighs a site by ``1 / (y_counts[y] * y_counts.shape[0])`` where
  ``y_counts = F.one_hot(all_y).sum(0)``, so its "number of classes" is the one-hot width, the
  batch's largest label + 1, and its weights sum to (classes present) / (largest label + 1).
  rxsweep divides by the classes present, so the weights sum to 1 and the loss is a weighted mean
  on the scale of DANN's. The sites' relative weights are the same; the two losses agree when
  every class up to the largest label is in the batch (PACS's 7 classes at 32 sites a domain);
  otherwise (DomainNet's 345 classes, RxRx1's 1,139) DomainBed's loss shrinks by a factor that
  changes from batch to batch with which labels were drawn.

Which column is the domain (``experiment`` or ``plate``) is decided by the training code, which
also maps site-table values to integer ids; this module only needs ``n_domains``. ``none`` is
plain ERM: no domain head, ``domain_logits`` is None.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn as nn

from .grl import GradientReversal
from .heads import DomainHead, domain_loss_per_site

#: What a domain is: an experiment (RxRx1's batch), a plate, a batch (the experiment by its
#: LoadData name: a batch of one source) or a source (a laboratory); none: no domain head (ERM).
DOMAIN_LABELS = ("experiment", "plate", "batch", "source", "none")
ADVERSARIES = ("dann", "cdann")
#: Parameter-name prefixes of the discriminator (its own learning rate, see training.recipe).
DISCRIMINATOR_PREFIXES = ("domain_head.", "class_embedding.")


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
        adversary: ``"dann"``, or ``"cdann"``: the domain head also sees the class, through an
            ``nn.Embedding(n_classes, embedding_dim)`` added to its input.
        lambd: initial GRL λ (usually set every step with :meth:`set_lambda`).

    ``forward(x, labels=None)`` returns ``{"logits": [N, n_classes], "domain_logits": [N, n_domains]
    or None, "embedding": [N, D]}``; a CDANN's domain logits need ``labels`` (None without them). The embedding is what the analysis code scores for batch mixing.
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
        adversary: str = "dann",
    ) -> None:
        super().__init__()
        if domain_label not in DOMAIN_LABELS:
            raise ValueError(f"unknown domain_label {domain_label!r}; known: {list(DOMAIN_LABELS)}")
        if adversary not in ADVERSARIES:
            raise ValueError(f"unknown adversary {adversary!r}; known: {list(ADVERSARIES)}")
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
        self.class_embedding: Optional[nn.Embedding] = None
        if domain_label != "none":
            if adversary == "cdann":
                self.class_embedding = nn.Embedding(n_classes, self.embedding_dim)
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

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Dict[str, Optional[torch.Tensor]]:
        emb = self.embed(self.backbone.forward_features(x))
        logits = self.label_head(emb)
        domain_logits = None
        if self.domain_head is not None:
            reversed_emb = self.grl(emb)
            if self.class_embedding is None:
                domain_logits = self.domain_head(reversed_emb)
            elif labels is not None:
                domain_logits = self.domain_head(reversed_emb + self.class_embedding(labels))
        return {"logits": logits, "domain_logits": domain_logits, "embedding": emb}


def class_balance_weights(labels: torch.Tensor, dtype: torch.dtype = torch.float32,
                          seen: torch.Tensor | None = None) -> torch.Tensor:
    """Per-site weights ``1 / (n_y * C)`` over the sites ``seen`` (bool [N]; None: all), 0 for
    the others: ``n_y`` the count of the site's class ``y`` among the seen sites, ``C`` the number
    of distinct classes among them. Each present class then carries 1/C of the total and the
    weights sum to 1 (to 0 when no site is seen). (DomainBed divides by the largest label + 1
    instead of ``C``: see the module docstring.)"""
    if labels.ndim != 1 or not len(labels):
        raise ValueError(f"labels must be a non-empty [N], got shape {tuple(labels.shape)}")
    if bool((labels < 0).any()):
        # A site without a class has nothing to condition on (nn.Embedding rejects it too).
        raise ValueError("class-balanced weights need labels >= 0; unlabelled sites have no class")
    mask = _seen_mask(labels, seen, dtype)
    counts = torch.bincount(labels, weights=mask, minlength=1)  # no host sync: a GPU step stays async
    present = (counts > 0).sum().clamp_min(1).to(dtype)
    return mask / (counts[labels].clamp_min(1) * present)


def _seen_mask(labels: torch.Tensor, seen: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    if seen is None:
        return torch.ones(labels.shape, dtype=dtype, device=labels.device)
    if seen.shape != labels.shape:
        raise ValueError(f"seen must be [N]={labels.shape[0]}, got shape {tuple(seen.shape)}")
    return seen.to(dtype)


def adversary_domain_loss(logits: torch.Tensor, domains: torch.Tensor, labels: torch.Tensor,
                          adversary: str, smoothing: float = 0.0, seen: torch.Tensor | None = None) -> torch.Tensor:
    """The domain loss of ``adversary`` over the sites ``seen`` (bool [N], e.g. the control
    wells; None: every site), as a weighted sum over *every* site with weight 0 for the others.

    ``dann``: the mean cross-entropy over the seen sites (:func:`heads.domain_loss_per_site`;
    DomainBed's DANN has ``class_balance=False``). ``cdann``: ``sum_i w_i * CE_i`` with ``w_i =``
    :func:`class_balance_weights` of the seen sites' labels, as DomainBed's CDANN
    (``class_balance=True``): control wells outnumber each treatment several times over, and an
    unweighted conditional loss would mostly ask the features to hide the batch within the
    control classes.

    Why every site, zero-weighted: a batch with no site to see (no control well under
    ``domain_sites: controls``) then still puts the domain head in the graph, with zero
    gradients. Skipping the term instead left the head without a gradient on that rank, and DDP
    (``find_unused_parameters=False``, as Ray Train builds it) fails at the next step on the rank
    whose batch had none ("Parameter indices which did not receive grad").

    The weights come from this batch alone: under DDP each rank weighs its own sites and the
    gradients are averaged across ranks, as DomainBed's weights are per batch.
    """
    if adversary not in ADVERSARIES:
        raise ValueError(f"unknown adversary {adversary!r}; known: {list(ADVERSARIES)}")
    if labels.shape != domains.shape:
        raise ValueError(f"labels must be [N]={domains.shape[0]}, got shape {tuple(labels.shape)}")
    per_site = domain_loss_per_site(logits, domains, smoothing)
    if adversary == "cdann":
        weights = class_balance_weights(labels, per_site.dtype, seen)
    else:
        mask = _seen_mask(labels, seen, per_site.dtype)
        weights = mask / mask.sum().clamp_min(1)
    return (weights * per_site).sum()
