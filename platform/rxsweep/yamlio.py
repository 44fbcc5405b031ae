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


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """PyYAML keeps the last of two equal keys; a space file with `lr:` twice would run a value its
    author may not have meant. Refused, naming the key and both lines."""
    first_line: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:  # an unhashable key: construct_mapping says so
            continue
        if key in first_line:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"duplicate key {key!r}: on line {first_line[key] + 1} and again on line "
                f"{key_node.start_mark.line + 1}", key_node.start_mark)
        first_line[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def safe_load(text: str):
    """Parse YAML text into plain Python values (dict, list, str, int, float, bool, None)."""
    loader = _Loader(text)  # what yaml.safe_load does, with the resolver above
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def safe_dump(data, **kwargs) -> str:
    return yaml.safe_dump(data, **kwargs)
