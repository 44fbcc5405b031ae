"""The pieces one training step is made of: model, optimiser, lr schedule, λ, the step itself.

Kept apart from the Ray loop so that the throughput benchmark's bare PyTorch loop runs exactly the
same step on the same model.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from rxsweep.models import DANN, DISCRIMINATOR_PREFIXES, create_backbone, get_schedule
from rxsweep.models.dann import adversary_domain_loss
from rxsweep.training.config import TrainConfig
from rxsweep.training.plan import RunPlan


def build_model(cfg: TrainConfig, plan: RunPlan) -> DANN:
    """Backbone (+ local pretrained weights) -> DANN with the plan's class and domain counts."""
    backbone = create_backbone(cfg.backbone, in_chans=plan.in_channels,
                               checkpoint_path=cfg.pretrained_weights, **plan.backbone_kwargs)
    return DANN(backbone, plan.n_classes, domain_label=cfg.domain_label,
                n_domains=plan.n_domains if cfg.adversarial else None, adversary=cfg.adversary,
                embedding_dim=cfg.embedding_dim, domain_width=cfg.domain_width,
                domain_depth=cfg.domain_depth, domain_dropout=cfg.domain_dropout, lambd=0.0)


def build_optimizer(cfg: TrainConfig, model: DANN) -> torch.optim.Optimizer:
    """AdamW or SGD over four parameter groups: {feature+label, domain head} x {decay, no decay}.

    Biases and normalisation weights (1-D tensors) get no weight decay; the domain head's learning
    rate is ``lr x domain_lr_mult``. Each group's ``lr`` is its peak; the scheduler scales it.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name.startswith(DISCRIMINATOR_PREFIXES), p.ndim <= 1), []).append(p)
    params = [{"params": ps, "lr": cfg.lr * (cfg.domain_lr_mult if domain else 1.0),
               "weight_decay": 0.0 if no_decay else cfg.weight_decay}
              for (domain, no_decay), ps in sorted(groups.items())]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def lr_factor(step: int, total_steps: int, warmup_fraction: float) -> float:
    """Linear warm-up from 0 over ``warmup_fraction`` of the steps, then cosine decay to 0."""
    warmup = int(round(warmup_fraction * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def build_scheduler(cfg: TrainConfig, optimizer, total_steps: int):
    """Per-step LambdaLR of :func:`lr_factor` (its state_dict holds only the step count)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, cfg.warmup_fraction))


def lambda_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """GRL strength at a step: the schedule at progress p = step / total_steps (0 for ERM)."""
    if not cfg.adversarial:
        return 0.0
    p = min(1.0, step / max(1, total_steps))
    return get_schedule(cfg.lambda_schedule)(p, cfg.lambda_max, **cfg.schedule_kwargs())


def autocast(device: torch.device):
    """bf16 autocast on GPU; a no-op on CPU (bf16 matmuls are slow on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def domain_rows(cfg: TrainConfig, is_treatment: torch.Tensor | None) -> torch.Tensor | None:
    """Boolean mask of a batch's rows the domain loss sees; None: every row. With
    ``domain_sites: controls``, the control wells only: they hold the same siRNAs on every plate
    and experiment, so their domain carries no label information (each plate holds one of four
    treatment groups, and a domain head that sees treatments can read the group off the plate)."""
    if cfg.domain_sites == "all":
        return None
    if is_treatment is None:
        raise ValueError("domain_sites: controls needs the batch's is_treatment column")
    return is_treatment == 0


@dataclass
class StepOutput:
    loss: torch.Tensor  # label + domain, detached
    label_loss: torch.Tensor
    domain_loss: torch.Tensor  # 0 for ERM
    correct: torch.Tensor  # label predictions right in this batch
    domain_correct: torch.Tensor  # domain predictions right (0 for ERM)
    domain_seen: torch.Tensor  # sites the domain loss saw (0 for ERM)
    embedding: torch.Tensor  # [N, D] the batch's embeddings, detached (adaptive resampling keeps them)


def train_step(model: nn.Module, optimizer, scheduler, x: torch.Tensor, labels: torch.Tensor,
               domains: torch.Tensor | None, cfg: TrainConfig, device: torch.device,
               is_treatment: torch.Tensor | None = None, class_weights: torch.Tensor | None = None) -> StepOutput:
    """One optimiser step: label CE over every site + domain CE (through the GRL already set on the
    model) over the sites ``cfg.domain_sites`` names: all, or the control wells only
    (``is_treatment == 0``; a batch without one adds a domain loss of 0 that still reaches the
    domain head). The domain CE is a mean for ``dann`` and class-balanced over those sites for
    ``cdann`` (``models.dann.adversary_domain_loss``)."""
    with autocast(device):
        out = model(x, labels=labels)
        label_loss = F.cross_entropy(out["logits"].float(), labels, weight=class_weights,
                                     label_smoothing=cfg.label_smoothing)
        loss = label_loss
        dom_loss = torch.zeros((), device=device)
        dom_correct = torch.zeros((), device=device)
        dom_seen = torch.zeros((), device=device)
        if out["domain_logits"] is not None:
            dom_logits = out["domain_logits"].float()
            seen = domain_rows(cfg, is_treatment)
            # every site in the graph, the unseen ones at weight 0: a batch with no site to see
            # still gives the domain head a (zero) gradient, as DDP needs on every rank
            dom_loss = adversary_domain_loss(dom_logits, domains, labels, cfg.adversary,
                                             cfg.env_label_smoothing, seen=seen)
            loss = loss + dom_loss
            hit = dom_logits.argmax(1) == domains
            dom_correct = (hit if seen is None else hit & seen).sum()
            dom_seen = torch.tensor(float(len(domains)), device=device) if seen is None else seen.sum().float()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    correct = (out["logits"].argmax(1) == labels).sum()
    return StepOutput(loss.detach(), label_loss.detach(), dom_loss.detach(), correct, dom_correct, dom_seen,
                      out["embedding"].detach())
