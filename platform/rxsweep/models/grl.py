"""Gradient reversal layer (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation by
Backpropagation"): identity in the forward pass, gradient multiplied by -λ in the backward pass.

Placed between the features and the domain head, it makes one backward pass train the domain head
to *recognise* the domain while pushing the feature extractor to *hide* it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def _check_lambda(lambd) -> float:
    if torch.is_tensor(lambd) or isinstance(lambd, bool):
        raise TypeError(f"lambda must be a Python float, got {type(lambd).__name__}")
    lambd = float(lambd)
    if not math.isfinite(lambd):
        raise ValueError(f"lambda must be finite, got {lambd}")
    return lambd


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = lambd
        return x.view_as(x)  # a view, so autograd records this node; values untouched

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output * (-ctx.lambd), None  # no gradient for λ


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """Identity forward; backward multiplies the incoming gradient by ``-lambd`` (a float)."""
    return _GradReverse.apply(x, _check_lambda(lambd))


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; ``set_lambda`` each step from a λ schedule.

    λ is a plain attribute, not a buffer: it is a function of training progress, recomputed
    from the schedule on resume, so it does not belong in the state_dict.
    """

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = _check_lambda(lambd)

    def set_lambda(self, lambd: float) -> None:
        self.lambd = _check_lambda(lambd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.lambd)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"
