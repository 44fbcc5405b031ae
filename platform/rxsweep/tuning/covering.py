"""A small covering set of a space's categorical choices: every value of every `choice` parameter
in at least one row, each row a valid trial (its conditions hold), far fewer rows than the product.

`rxsweep sweep --smoke` runs one short trial a row. For `rxrx1_gpu.yaml` the product of its choices
is 4 x 3 x 2 x 2 x 3 x 2 x 2 x 3 x 2 x 3 = 31,104 trials; its covering set has 4 rows.

Greedy, row by row, parameters in sampling order (parents before the parameters they enable).
The first rows start from given partial rows (the trials a caller must have, e.g. one of each
method the verdict compares). A parameter whose conditions do not hold in the row is left out (as
the sampler would leave it). Each other active parameter takes, in order of preference: a value no
row has yet; one that enables the most parameters with values still uncovered (so `resampling:
adaptive` comes while `ar_bins` has values left); one that makes the most pairs with the row's
values so far that no row has yet; the value least used. Numeric parameters are not in the rows:
the sampler draws them.
"""

from __future__ import annotations

import itertools
from collections import Counter

from rxsweep.tuning.space import Param, SearchSpace, declared_conditions


def covering_rows(space: SearchSpace, start: list[dict] = ()) -> tuple[list[dict], list[tuple[str, object]]]:
    """(rows, never_active): rows of {choice parameter: value}, the first ones completing the
    partial rows ``start`` (in order; their values are kept); never_active lists the (parameter,
    value) pairs no valid row can hold (a choice enabled only by a numeric parameter, which the
    rows leave to the sampler)."""
    choices = [p for p in space.params if p.kind == "choice"]
    uncovered = {(p.name, v) for p in choices for v in p.values}
    used: Counter = Counter()
    pairs: set = set()
    rows: list[dict] = []
    for given in itertools.chain(start, itertools.repeat({})):  # the start rows, then empty ones
        if not uncovered and len(rows) >= len(start):
            break
        row = _next_row(space, choices, given, uncovered, used, pairs)
        newly = set(row.items()) & uncovered
        if not newly and len(rows) >= len(start):
            break
        uncovered -= newly
        used.update(row.items())
        pairs |= _pairs(row)
        rows.append(row)
    order = {(p.name, v): i for i, (p, v) in enumerate((p, v) for p in choices for v in p.values)}
    return rows, sorted(uncovered, key=order.__getitem__)


def _next_row(space: SearchSpace, choices: list[Param], given: dict, uncovered: set, used: Counter,
              pairs: set) -> dict:
    values = space.base_config().to_dict()
    row: dict = {}
    for p in choices:
        if not space.is_active(p, values, row):
            continue
        if p.name in given:
            best = given[p.name]
        else:
            best = max(p.values, key=lambda v: ((p.name, v) in uncovered,
                                                 _enables(p.name, v, choices, uncovered),
                                                 len(_pairs(row, (p.name, v)) - pairs),
                                                 -used[(p.name, v)]))
        row[p.name] = values[p.name] = best
    return row


def _pairs(row: dict, extra: tuple | None = None) -> set:
    """The row's pairs of (parameter, value) items (with ``extra`` against each of them, if given)."""
    items = list(row.items())
    if extra is not None:
        return {(item, extra) for item in items}
    return {(a, b) for i, a in enumerate(items) for b in items[i + 1:]}


def _enables(name: str, value, choices: list[Param], uncovered: set) -> int:
    """Uncovered values of the choice parameters that need ``name`` to be ``value``."""
    count = 0
    for q in choices:
        for parent, allowed in (*declared_conditions(q.name), *q.when):
            if parent == name and value in allowed:
                count += sum((q.name, v) in uncovered for v in q.values)
                break
    return count
