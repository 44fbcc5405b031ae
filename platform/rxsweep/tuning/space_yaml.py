"""The search-space file reader: one YAML file a study, checked in full before Ray starts.

    name: default                       study name (letters, digits, - and _)
    description: ...                    optional
    objectives:                         1 or 2; the first also drives the early-stopping scheduler
      - {metric: heldout_val_acc, mode: max}
      - mixing                          a bare name takes the metric's natural mode
    num_samples: 8                      trials
    seed: 0                             seeds the Optuna sampler
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}     or {type: fifo}
    resources: {workers: 1, cpus_per_worker: 1, gpus_per_worker: 0, driver_cpus: 0.1}   driver_cpus: a
                                        multi-worker trial's driver; a single-worker trial asks for its worker only
    failures: {worker_restarts: 1, trial_retries: 1}
    confirm: {seeds: 3}                 after the search, the best configuration of each method
                                        (ERM, DANN, CDANN) on held-out validation is run again
                                        with this many seeds, to the end, for the verdict; 0: none
    fixed: {epochs: 4, batch_size: 32}  any TrainConfig field, for every trial
    start_with:                         optional: the first trials' values (the rest are drawn),
      - {domain_label: none}            e.g. an ERM baseline the sampler cannot skip
    parameters:                         TrainConfig hyperparameters only
      lr: {loguniform: [1.0e-4, 1.0e-2]}
      backbone: {choice: [cnn-small, resnet18]}
      domain_depth: {int: [1, 3]}
      lambda_max: default                the domain declared in rxsweep.training.config
      momentum: {uniform: [0.8, 0.95], when: {optimizer: sgd}}

:func:`load_space` reads a file into the model of ``rxsweep.tuning.space`` (see there for how
declared and ``when`` conditions combine). Every error names the file, the key and what is
allowed, and is raised here, long before a trial starts.
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from pathlib import Path
from typing import Any, Iterable

from rxsweep import yamlio
from rxsweep.training.config import ConfigError, TrainConfig, field_specs
from rxsweep.tuning.objectives import Objective, parse_objectives
from rxsweep.tuning.space import (DEFAULT_CONFIRM_SEEDS, DEFAULT_DRIVER_CPUS, DISTRIBUTIONS, RESOURCE_FIELDS, SCHEDULERS, Failures,
                                  Param, Scheduler, SearchSpace, SpaceError, declared_conditions)

TOP_LEVEL_KEYS = ("name", "description", "objectives", "num_samples", "seed", "scheduler", "resources",
                  "failures", "confirm", "fixed", "start_with", "parameters")


def did_you_mean(word: Any, known: Iterable) -> str:
    """' (did you mean 'x'?)' for the closest known name, or '' when none is close: a typo in a
    key or value is the commonest mistake in a space file, so every "unknown" error offers it."""
    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_space(path: str | Path) -> SearchSpace:
    """Read and check a search-space file; every problem is a SpaceError naming file and key."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"search space file not found: {path}")
    text = path.read_text()
    try:
        raw = yamlio.safe_load(text)
    except yamlio.YAMLError as e:
        raise SpaceError(f"{path}: not valid YAML: {e}") from None
    return parse_space(raw, path, text)


def parse_space(raw: Any, path: Path, text: str = "") -> SearchSpace:
    where = _Where(path)
    if not isinstance(raw, dict):
        raise where.error("", f"must be a mapping with keys {list(TOP_LEVEL_KEYS)}")
    where.unknown_keys("", raw, TOP_LEVEL_KEYS)
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise where.error("name", f"{name!r} must be letters, digits, '.', '-' or '_' (it names folders)")
    num_samples = where.integer("num_samples", raw.get("num_samples", 8), minimum=1)
    seed = where.integer("seed", raw.get("seed", 0), minimum=0)
    try:
        objectives = parse_objectives(raw.get("objectives", ["heldout_val_acc"]))
    except ValueError as e:
        raise where.error("objectives", str(e)) from None
    scheduler = _scheduler(where, raw.get("scheduler", {}), objectives)
    resources, driver_cpus = _resources(where, raw.get("resources", {}))
    failures = _failures(where, raw.get("failures", {}))
    confirm = where.mapping("confirm", raw.get("confirm", {}))
    where.unknown_keys("confirm", confirm, ("seeds",))
    confirm_seeds = where.integer("confirm.seeds", confirm.get("seeds", DEFAULT_CONFIRM_SEEDS), minimum=0)
    fixed = where.mapping("fixed", raw.get("fixed", {}))
    for key in fixed:
        if key in resources:
            raise where.error(f"fixed.{key}", f"is set by resources.{_resource_key(key)}; set it in one place")
    fixed = {**fixed, **resources}
    try:
        base = TrainConfig.from_dict(fixed)
    except ConfigError as e:
        raise where.error("fixed", str(e)) from None
    if scheduler.kind == "asha" and scheduler.grace_period > base.epochs:
        raise where.error("scheduler.grace_period",
                          f"{scheduler.grace_period} is more than the {base.epochs} epochs a trial runs")
    raw_params = where.mapping("parameters", raw.get("parameters", {}))
    if not raw_params:
        raise where.error("parameters", "is empty: name at least one hyperparameter to search")
    params = [_param(where, name, spec, fixed) for name, spec in raw_params.items()]
    params = _check_conditions(where, params, base)
    start_with = _start_with(where, raw.get("start_with", []), params, num_samples)
    return SearchSpace(path=path, name=name, description=str(raw.get("description", "")),
                       objectives=objectives, num_samples=num_samples, seed=seed, scheduler=scheduler,
                       driver_cpus=driver_cpus, failures=failures, fixed=fixed, params=tuple(params),
                       start_with=start_with, confirm_seeds=confirm_seeds, text=text)


def _start_with(where: "_Where", raw: Any, params: list[Param], num_samples: int) -> tuple[dict, ...]:
    if not isinstance(raw, list):
        raise where.error("start_with", f"must be a list of {{parameter: value}} mappings, got {raw!r}")
    if len(raw) > num_samples:
        raise where.error("start_with", f"lists {len(raw)} trials, more than num_samples={num_samples}")
    by_name = {p.name: p for p in params}
    for i, point in enumerate(raw):
        point = where.mapping(f"start_with[{i}]", point)
        for name, value in point.items():
            key = f"start_with[{i}].{name}"
            if name not in by_name:
                raise where.error(key, f"is not a searched parameter; searched: {list(by_name)}")
            p = by_name[name]
            inside = (value in p.values if p.kind == "choice" else
                      isinstance(value, (int, float)) and not isinstance(value, bool) and p.low <= value <= p.high)
            if not inside:
                domain = list(p.values) if p.kind == "choice" else f"[{p.low}, {p.high}]"
                raise where.error(key, f"{value!r} is outside the parameter's domain {domain}")
    return tuple(dict(point) for point in raw)


def _resource_key(field_name: str) -> str:
    return next(k for k, v in RESOURCE_FIELDS.items() if v == field_name)


def _scheduler(where: "_Where", raw: Any, objectives: tuple[Objective, ...]) -> Scheduler:
    raw = where.mapping("scheduler", raw)
    where.unknown_keys("scheduler", raw, ("type", "grace_period", "reduction_factor"))
    kind = raw.get("type", "asha")
    if kind not in SCHEDULERS:
        raise where.error("scheduler.type", f"{kind!r} is not one of {list(SCHEDULERS)}")
    if kind == "asha" and not objectives[0].per_epoch:
        raise where.error("scheduler", f"asha stops trials on a metric reported every epoch, and "
                          f"{objectives[0].metric!r} is only known at the end of a trial; list a "
                          "per-epoch objective first (e.g. heldout_val_acc) or use type: fifo")
    grace = where.integer("scheduler.grace_period", raw.get("grace_period", 1), minimum=1)
    factor = where.number("scheduler.reduction_factor", raw.get("reduction_factor", 2.0))
    if factor <= 1:
        raise where.error("scheduler.reduction_factor", f"{factor} must be > 1")
    return Scheduler(kind, grace, float(factor))


def _resources(where: "_Where", raw: Any) -> tuple[dict, float]:
    raw = where.mapping("resources", raw)
    where.unknown_keys("resources", raw, (*RESOURCE_FIELDS, "driver_cpus"))
    driver = where.number("resources.driver_cpus", raw.get("driver_cpus", DEFAULT_DRIVER_CPUS))
    if driver <= 0:
        raise where.error("resources.driver_cpus", f"{driver} must be > 0")
    return {RESOURCE_FIELDS[k]: v for k, v in raw.items() if k in RESOURCE_FIELDS}, float(driver)


def _failures(where: "_Where", raw: Any) -> Failures:
    raw = where.mapping("failures", raw)
    where.unknown_keys("failures", raw, ("worker_restarts", "trial_retries"))
    return Failures(where.integer("failures.worker_restarts", raw.get("worker_restarts", 1), minimum=0),
                    where.integer("failures.trial_retries", raw.get("trial_retries", 1), minimum=0))


def _param(where: "_Where", name: Any, spec: Any, fixed: dict) -> Param:
    key = f"parameters.{name}"
    specs = field_specs()
    if name not in specs:
        raise where.error(key, f"is not a training config field{did_you_mean(name, specs)}; hyperparameters: "
                               f"{[k for k, (_, s) in specs.items() if s.searchable]}")
    default, declared = specs[name]
    if not declared.searchable:
        raise where.error(key, "is a run setting, not a hyperparameter; set it under fixed:")
    if name in fixed:
        raise where.error(key, "is also under fixed:; a value is either fixed or searched")
    if spec in ("default", None) or spec == {}:
        spec = _declared_domain(name, declared)
    if not isinstance(spec, dict):
        raise where.error(key, f"must be a mapping like {{choice: [...]}} or 'default', got {spec!r}")
    where.unknown_keys(key, spec, (*DISTRIBUTIONS, "log", "when"))
    kinds = [k for k in DISTRIBUTIONS if k in spec]
    if len(kinds) != 1:
        raise where.error(key, f"needs exactly one of {list(DISTRIBUTIONS)}, got {kinds or 'none'}")
    kind = kinds[0]
    integer = _is_int_field(name)
    when = _when(where, key, spec.get("when", {}))
    log = spec.get("log", False)
    if not isinstance(log, bool) or (log and kind != "int"):
        raise where.error(f"{key}.log", "is true/false and only for int (use loguniform for floats)")
    if kind == "choice":
        values = spec["choice"]
        if not isinstance(values, list) or not values:
            raise where.error(f"{key}.choice", "must be a non-empty list of values")
        if len(set(map(repr, values))) != len(values):
            raise where.error(f"{key}.choice", f"{values} repeats a value")
        for value in values:
            _check_value(where, f"{key}.choice", name, value, fixed)
        return Param(name, kind, tuple(values), when=when)
    bounds = spec[kind]
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
        raise where.error(f"{key}.{kind}", f"must be [low, high], two numbers; got {bounds!r}")
    low, high = bounds
    if kind == "int" and not all(isinstance(b, int) for b in bounds):
        raise where.error(f"{key}.int", f"bounds must be integers, got {bounds}")
    if integer and kind != "int":
        raise where.error(key, f"{name} is an integer: use int: [low, high]")
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise where.error(f"{key}.{kind}", f"low must be below high (and both finite), got [{low}, {high}]")
    if (kind == "loguniform" or log) and low <= 0:
        raise where.error(f"{key}.{kind}", f"a log scale needs low > 0, got {low}")
    for bound in (low, high):
        _check_value(where, f"{key}.{kind}", name, bound, fixed)
    return Param(name, kind, low=low, high=high, log=log, when=when)


def _declared_domain(name: str, declared) -> dict:
    if declared.choices is not None:
        return {"choice": list(declared.choices)}
    if declared.low is None or declared.high is None:
        raise SpaceError(f"{name} has no declared search domain; give one (choice/uniform/loguniform/int)")
    if _is_int_field(name):
        return {"int": [int(declared.low), int(declared.high)]}
    return {"loguniform" if declared.log else "uniform": [declared.low, declared.high]}


def _is_int_field(name: str) -> bool:
    hint = typing.get_type_hints(TrainConfig)[name]
    return hint is int


def _check_value(where: "_Where", key: str, name: str, value: Any, fixed: dict) -> None:
    try:
        TrainConfig.from_dict({**fixed, name: value})
    except ConfigError as e:
        raise where.error(key, str(e)) from None


def _when(where: "_Where", key: str, raw: Any) -> tuple[tuple[str, tuple], ...]:
    raw = where.mapping(f"{key}.when", raw)
    specs = field_specs()
    out = []
    for parent, allowed in raw.items():
        if parent not in specs:
            hint = did_you_mean(parent, specs)
            raise where.error(f"{key}.when.{parent}", f"is a condition on a parameter that does not exist{hint}")
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        if not allowed:
            raise where.error(f"{key}.when.{parent}", "lists no value, so it could never hold")
        out.append((parent, allowed))
    return tuple(out)


def _check_conditions(where: "_Where", params: list[Param], base: TrainConfig) -> list[Param]:
    """Every condition can hold, and the parameters can be drawn parents first (no cycles)."""
    by_name = {p.name: p for p in params}
    values = base.to_dict()
    for p in params:
        for parent, allowed in (*declared_conditions(p.name), *p.when):
            source = "declared" if (parent, allowed) in declared_conditions(p.name) else "when"
            key = f"parameters.{p.name}" + (f".when.{parent}" if source == "when" else "")
            if parent == p.name:
                raise where.error(key, "a parameter cannot depend on itself")
            if parent in by_name:
                possible = _possible_values(by_name[parent])
                if possible is not None and not set(map(repr, allowed)) & set(map(repr, possible)):
                    raise where.error(key, f"needs {parent} in {list(allowed)}, but {parent} is drawn from "
                                           f"{list(possible)}: it would never be sampled")
            elif values[parent] not in allowed or not _could_be_used(parent, values, by_name):
                why = ("only matters" if source == "declared" else "is conditioned to")
                raise where.error(key, f"{why} when {parent} is one of {list(allowed)}, but {parent} is "
                                       f"not searched and is {values[parent]!r} in every trial: it would "
                                       f"never be sampled; search {parent} or drop {p.name}")
    ordered: list[Param] = []
    state: dict[str, str] = {}

    def visit(p: Param, chain: list[str]) -> None:
        if state.get(p.name) == "done":
            return
        if state.get(p.name) == "visiting":
            raise where.error(f"parameters.{p.name}", f"conditions form a cycle: {' -> '.join(chain + [p.name])}")
        state[p.name] = "visiting"
        for parent, _ in (*declared_conditions(p.name), *p.when):
            if parent in by_name:
                visit(by_name[parent], chain + [p.name])
        state[p.name] = "done"
        ordered.append(p)

    for p in params:
        visit(p, [])
    return ordered


def _could_be_used(name: str, values: dict, by_name: dict[str, Param]) -> bool:
    """Static form of _used: a searched parent may take any of its possible values."""
    for parent, allowed in declared_conditions(name):
        if parent in by_name:
            possible = _possible_values(by_name[parent])
            if possible is not None and not set(map(repr, allowed)) & set(map(repr, possible)):
                return False
        elif values[parent] not in allowed or not _could_be_used(parent, values, by_name):
            return False
    return True


def _possible_values(p: Param) -> tuple | None:
    return p.values if p.kind == "choice" else None


class _Where:
    """Builds error messages that name the file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, problem: str) -> SpaceError:
        return SpaceError(f"{self.path}: {key + ': ' if key else ''}{problem}")

    def unknown_keys(self, key: str, raw: dict, allowed: tuple) -> None:
        for k in raw:
            if k not in allowed:
                where = f"{key}.{k}" if key else str(k)
                raise self.error(where, f"unknown key{did_you_mean(k, allowed)}; allowed: {list(allowed)}")

    def mapping(self, key: str, raw: Any) -> dict:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.error(key, f"must be a mapping, got {raw!r}")
        return raw

    def integer(self, key: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(key, f"must be a number, got {value!r}")
        return float(value)
