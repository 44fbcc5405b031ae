"""Name -> factory registries (timm `_registry.py` style).

A registry is an explicit dict filled by a decorator that refuses duplicate names, so two modules
cannot silently shadow each other's entry. Unknown names raise ``ValueError`` listing the known
ones, so a typo in a sweep config fails at trial start with the fix in the message.

Backbones are registered in their family modules (``resnet.py``, ``vit.py`` ...); importing
``rxsweep.models`` imports all of them, which fills ``BACKBONES``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Generic, List, TypeVar

import torch.nn as nn

T = TypeVar("T", bound=Callable[..., Any])


class Registry(Generic[T]):
    """A named set of callables. ``kind`` only shapes error messages ("unknown backbone 'x'")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@reg.register("name")``. Raises ``ValueError`` if the name is taken."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def deco(fn: T) -> T:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered "
                    f"(by {self._entries[name].__module__}.{self._entries[name].__qualname__})"
                )
            self._entries[name] = fn
            return fn

        return deco

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; known: {self.names()}") from None

    def names(self) -> List[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


#: Backbone factories: ``fn(in_chans: int, **kwargs) -> nn.Module`` whose module has
#: ``forward_features(x) -> [N, num_features]``, ``num_features`` and ``first_conv``.
BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")


def register_backbone(name: str):
    """Decorator registering a backbone factory under ``name`` (refuses duplicates)."""
    return BACKBONES.register(name)


def list_backbones() -> List[str]:
    """Sorted names of all registered backbones."""
    return BACKBONES.names()


def create_backbone(
    name: str, in_chans: int = 3, checkpoint_path: str | None = None, **kwargs: Any
) -> nn.Module:
    """Build backbone ``name`` for ``in_chans``-channel images.

    ``kwargs`` go to the family's constructor (e.g. ``img_size`` for ``vit_small``,
    ``drop_rate``); an unknown kwarg raises ``TypeError`` from the factory.
    ``checkpoint_path``: optional local state_dict file loaded with
    :func:`rxsweep.models.weights.load_pretrained` (classifier dropped, first conv adapted to
    ``in_chans``). Nothing is ever downloaded.
    """
    factory = BACKBONES.get(name)
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
    model = factory(in_chans=in_chans, **kwargs)
    for attr in ("num_features", "first_conv"):
        if not hasattr(model, attr):  # a contract bug in the factory, not a user error
            raise TypeError(f"backbone {name!r} does not declare {attr!r}")
    if checkpoint_path is not None:
        from .weights import load_pretrained

        result = load_pretrained(model, checkpoint_path, in_chans)
        # strict=False inside load_pretrained tolerates the dropped classifier; a backbone left
        # partly at random init would be a silent failure, so refuse it here.
        if result.missing_keys:
            raise ValueError(
                f"checkpoint {checkpoint_path!s} does not fit backbone {name!r}: "
                f"missing {result.missing_keys[:8]}{' ...' if len(result.missing_keys) > 8 else ''}"
            )
    return model
