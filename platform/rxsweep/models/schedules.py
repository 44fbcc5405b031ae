"""λ schedules for the gradient reversal layer: ``f(p, lambda_max, **kw) -> float``.

``p`` is training progress in [0, 1] (e.g. step / total_steps); anything else raises ValueError.
``lambda_max`` must be finite and >= 0. Schedules by name through :func:`get_schedule`.

=========  =================================================================================
constant   λ_max at every p.
ganin      λ_max * (2 / (1 + exp(-γ p)) - 1), γ = 10 (Ganin & Lempitsky 2015, ICML; also
           Ganin et al. 2016, JMLR "Domain-Adversarial Training of Neural Networks"). 0 at p = 0,
           ≈ 0.9866 λ_max at p = 0.5, ≈ 0.99991 λ_max at p = 1: it never quite reaches λ_max.
linear     0 at p = 0, rising linearly to λ_max at p = ``warmup`` (default 0.25, a quarter of
           training), then λ_max. ``warmup = 0`` means λ_max throughout.
step       0 for p < ``p0`` (default 0.5), λ_max from p0 on (ERM warm start, then adversarial).
=========  =================================================================================
"""

from __future__ import annotations

import math
from typing import Callable, List

from .registry import Registry

Schedule = Callable[..., float]
SCHEDULES: Registry[Schedule] = Registry("schedule")


def _check(p: float, lambda_max: float) -> tuple[float, float]:
    p, lambda_max = float(p), float(lambda_max)
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"p (training progress) must be in [0, 1], got {p}")
    if not (math.isfinite(lambda_max) and lambda_max >= 0.0):
        raise ValueError(f"lambda_max must be finite and >= 0, got {lambda_max}")
    return p, lambda_max


@SCHEDULES.register("constant")
def constant(p: float, lambda_max: float = 1.0) -> float:
    p, lambda_max = _check(p, lambda_max)
    return lambda_max


@SCHEDULES.register("ganin")
def ganin(p: float, lambda_max: float = 1.0, *, gamma: float = 10.0) -> float:
    p, lambda_max = _check(p, lambda_max)
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be finite and > 0, got {gamma}")
    return lambda_max * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


@SCHEDULES.register("linear")
def linear(p: float, lambda_max: float = 1.0, *, warmup: float = 0.25) -> float:
    p, lambda_max = _check(p, lambda_max)
    if not 0.0 <= warmup <= 1.0:
        raise ValueError(f"warmup must be in [0, 1], got {warmup}")
    if p >= warmup:
        return lambda_max
    return lambda_max * p / warmup


@SCHEDULES.register("step")
def step(p: float, lambda_max: float = 1.0, *, p0: float = 0.5) -> float:
    p, lambda_max = _check(p, lambda_max)
    if not 0.0 <= p0 <= 1.0:
        raise ValueError(f"p0 must be in [0, 1], got {p0}")
    return lambda_max if p >= p0 else 0.0


def get_schedule(name: str) -> Schedule:
    """The schedule ``name``; unknown names raise ValueError listing the known ones."""
    return SCHEDULES.get(name)


def list_schedules() -> List[str]:
    return SCHEDULES.names()
