"""Load local pretrained weights into a backbone, adapting the first conv to any channel count.

Nothing here downloads: checkpoints are files the user provides (e.g. a torchvision or timm
state_dict saved with ``torch.save(model.state_dict(), path)``).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import torch
import torch.nn as nn

#: Key prefixes of classification heads; rxsweep backbones have none, so these are dropped.
CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.")


def adapt_input_conv(in_chans: int, conv_weight: torch.Tensor) -> torch.Tensor:
    """Adapt a first-conv weight [O, I, kH, kW] (I = 3, RGB) to ``in_chans`` input channels.

    As timm's ``adapt_input_conv``:
    - ``in_chans == 1``: sum over the input channels (grey = R + G + B response);
    - ``in_chans == I``: unchanged;
    - otherwise (I must be 3): tile the RGB filters to ``in_chans`` channels
      (channel c gets filter c mod 3) and scale by 3 / in_chans, so that an input with the same
      value on every channel gives the same pre-activation as the RGB model did.
    The arithmetic is done in float32 (float64 for float64 weights) and the result cast back: the
    dtype is kept. The input is
    never modified; a new tensor is returned.
    """
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
    if conv_weight.ndim != 4:
        raise ValueError(f"conv_weight must be 4-D [O, I, kH, kW], got shape {tuple(conv_weight.shape)}")
    dtype = conv_weight.dtype
    w = conv_weight.detach().to(torch.promote_types(dtype, torch.float32))
    o, i, kh, kw = w.shape
    if in_chans == i:
        return conv_weight.detach().clone()
    if in_chans == 1:
        if i > 3:
            if i % 3:
                raise ValueError(f"cannot reduce {i} input channels to 1: not a multiple of 3")
            w = w.reshape(o, i // 3, 3, kh, kw).sum(dim=2)  # timm: sum within each RGB triple
        else:
            w = w.sum(dim=1, keepdim=True)
    else:
        if i != 3:
            raise ValueError(
                f"can only tile a 3-channel (RGB) conv to {in_chans} channels; weight has {i}"
            )
        repeat = math.ceil(in_chans / 3)
        w = w.repeat(1, repeat, 1, 1)[:, :in_chans] * (3.0 / in_chans)
    return w.to(dtype)


def _unwrap(obj: Any, path: str) -> dict:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path}: not a state_dict (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise ValueError(f"{path}: not a state_dict: non-tensor entries {bad[:5]}")
    sd = dict(obj)
    # DistributedDataParallel / torch.compile wrappers prefix every key.
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _reason(e: Exception) -> str:
    """The informative line of torch.load's error (its own text suggests weights_only=False,
    which is exactly what must not be done with an untrusted file)."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        tail = text.split(marker, 1)[1].strip()
        text = tail.split(". Please use", 1)[0].splitlines()[0] if tail else text
    else:
        text = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(e).__name__}: {text}".rstrip(": ")


def load_checkpoint_state_dict(path: str | os.PathLike) -> dict:
    """Read a state_dict from ``path`` with ``weights_only=True`` (never runs pickled code).

    Accepts a raw state_dict or a dict holding one under ``state_dict`` or ``model``.
    Raises ``FileNotFoundError`` or ``ValueError`` naming the path.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (bad zip / load key), EOFError ...
        raise ValueError(
            f"{path} is not a loadable PyTorch checkpoint: {_reason(e)} "
            "(read with weights_only=True, which refuses pickled objects other than tensors "
            "and plain containers)"
        ) from e
    return _unwrap(obj, path)


def load_pretrained(model: nn.Module, path: str | os.PathLike, in_chans: int):
    """Load the checkpoint at ``path`` into ``model`` (``strict=False``) and return
    ``torch.nn.modules.module._IncompatibleKeys(missing_keys, unexpected_keys)``.

    - classifier keys (``fc.``, ``classifier.``, ``head.``) are dropped;
    - the first conv, named by the model's ``first_conv`` attribute (timm style), is adapted with
      :func:`adapt_input_conv` when its input channels differ from ``in_chans``;
    - a model may define ``filter_state_dict(sd) -> sd`` for its own fixes (ViT resamples
      ``pos_embed``; DenseNet renames old torchvision keys).
    Shape mismatches on other keys raise ``RuntimeError`` from ``load_state_dict``.
    """
    sd = load_checkpoint_state_dict(path)
    sd = {k: v for k, v in sd.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    first_conv = getattr(model, "first_conv", None)
    if first_conv:
        model_w = model.get_parameter(f"{first_conv}.weight")
        if model_w.shape[1] != in_chans:
            raise ValueError(
                f"model's first conv {first_conv!r} takes {model_w.shape[1]} channels, "
                f"but in_chans={in_chans}"
            )
        key = f"{first_conv}.weight"
        if key in sd and sd[key].shape[1] != in_chans:
            sd[key] = adapt_input_conv(in_chans, sd[key])
    fix = getattr(model, "filter_state_dict", None)
    if callable(fix):
        sd = fix(sd)
    return model.load_state_dict(sd, strict=False)
