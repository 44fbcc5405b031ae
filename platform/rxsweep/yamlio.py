"""YAML reading for configs, search spaces and `--set` overrides: safe, and numbers as people write them.

PyYAML implements YAML 1.1, where `3e-3` and `1e5` (no dot) are strings, not floats; a user who
writes `lr: 3e-3` would get "lr must be a number, got '3e-3'". `safe_load` here is PyYAML's
SafeLoader (never constructs Python objects) plus YAML 1.2's float pattern, so those are floats.
"""

from __future__ import annotations

import re

import yaml

YAMLError = yaml.YAMLError


class _Loader(yaml.SafeLoader):
    pass


# YAML 1.2 core schema floats (with or without a dot, optional exponent), plus .inf/.nan.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def safe_load(text: str):
    """Parse YAML text into plain Python values (dict, list, str, int, float, bool, None)."""
    loader = _Loader(text)  # what yaml.safe_load does, with the resolver above
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def safe_dump(data, **kwargs) -> str:
    return yaml.safe_dump(data, **kwargs)
