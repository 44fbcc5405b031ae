"""`rxsweep sweep --space FILE --smoke`: the space's every choice, run for a few steps through the
real sweep path, before a cluster hour is spent on it.

:func:`smoke_space` derives a small space from the user's: one trial a row of a covering set of its
categorical choices (rxsweep.tuning.covering), the rows starting with one of each method the
verdict compares, so the confirmation step and the verdict have every arm. The derived space is a
normal space file: the sweep, Tune, Train, checkpoints, evaluation, mixing, the confirmation runs,
the ranking and the verdict run as they do for the real study. What changes (and only this):

- sizes only a GPU would take, and the length of a run: SMOKE_CAPS (each field at most its cap);
- every run raises once right after its first epoch's checkpoint (TrainConfig.fault_drill_epoch),
  so each run ends only if the space's failure policy restarts it and it resumes from that
  checkpoint; epoch-counted parameters are pinned to their low end (PINNED_LOW) so they act
  within the smoke's epochs;
- resources: the space's own worker count, on the GPUs when the cluster has them, else on CPUs
  with gloo, as many workers as the CPUs hold (at least 2 for a multi-worker space, so DDP runs);
- ASHA's grace period is 1 epoch, and 1 confirmation seed a method.

Numeric parameters are drawn by the space's own sampler, as in the study.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from rxsweep import locations, yamlio
from rxsweep.tuning import sweep_files
from rxsweep.training.config import TrainConfig, field_specs
from rxsweep.tuning.covering import covering_rows
from rxsweep.tuning.space import RESOURCE_FIELDS, SearchSpace, SpaceError
from rxsweep.tuning.space_yaml import load_space, parse_space

#: TrainConfig fields the smoke caps, and their caps: 2 epochs (one to resume from, one to resume
#: into) of 2 steps, on 8 images of 32 px a worker, one checkpoint kept (a ResNet-50's with its
#: optimizer state is ~300 MB), a 64 MiB stream buffer. Every other fixed value is kept.
SMOKE_CAPS = {"epochs": 2, "max_steps_per_epoch": 2, "batch_size": 8, "crop": 32, "stream_buffer_mb": 64,
              "keep_checkpoints": 1}
#: The epoch after which every smoke run raises once (TrainConfig.fault_drill_epoch).
DRILL_EPOCH = 1
#: Searched integers counted in epochs: pinned to their lowest value in the smoke's rows (AR's
#: weighted draws start after ar_warmup_epochs; at 2 or 3 they would never start in 2 epochs).
PINNED_LOW = ("ar_warmup_epochs",)
SMOKE_CONFIRM_SEEDS = 1


@dataclasses.dataclass(frozen=True)
class Smoke:
    space: SearchSpace  # the derived space (its text is the YAML written for it)
    changes: list[str]  # "field: before -> after", what the smoke changed of the user's space
    rows: list[dict]  # the covering rows, one trial each
    never_active: list[tuple]  # (parameter, value) pairs no row could hold


def smoke_space(space_file: str | Path, cluster: dict, image_size: int | None = None) -> Smoke:
    """The smoke of ``space_file`` for a cluster with ``cluster`` resources (ray.cluster_resources()).
    ``image_size``: the shards' image edge (the crop is at most that). SpaceError when the cluster
    cannot hold one smoke trial."""
    space = load_space(space_file)
    raw = space.values
    base = space.base_config()
    changes: list[str] = []

    fixed = dict(raw.get("fixed") or {})
    for name, cap in SMOKE_CAPS.items():
        if name == "crop" and image_size is not None:
            cap = min(cap, image_size)
        before = getattr(base, name)
        after = cap if before is None else min(before, cap)
        if after != before:
            fixed[name] = after
            changes.append(f"{name}: {before} -> {after}")
    fixed["fault_drill_epoch"] = DRILL_EPOCH
    changes.append(f"fault_drill_epoch: {base.fault_drill_epoch} -> {DRILL_EPOCH}")

    resources, why = smoke_resources(space, cluster)
    old = dict(raw.get("resources") or {})
    for key, value in resources.items():
        before = old.get(key, _resource_default(space, key))
        if value != before:
            changes.append(f"resources.{key}: {before} -> {value}{why if key == 'workers' else ''}")
    scheduler = dict(raw.get("scheduler") or {})
    if scheduler.get("type", "asha") == "asha" and scheduler.get("grace_period", 1) != 1:
        changes.append(f"scheduler.grace_period: {scheduler['grace_period']} -> 1")
        scheduler["grace_period"] = 1
    confirm = {"seeds": min(space.confirm_seeds, SMOKE_CONFIRM_SEEDS)}
    if confirm["seeds"] != space.confirm_seeds:
        changes.append(f"confirm.seeds: {space.confirm_seeds} -> {confirm['seeds']}")

    rows, never = covering_rows(space, start=method_rows(space) or list(space.start_with))
    rows = [_pin_low(space, row) for row in rows] or [{}]  # no choice to cover: one drawn trial
    changes.append(f"num_samples: {space.num_samples} -> {len(rows)} (one trial a covering row)")
    derived = {**raw, "name": f"{space.name}-smoke", "num_samples": len(rows), "start_with": rows,
               "fixed": fixed, "resources": resources, "scheduler": scheduler, "confirm": confirm,
               "description": f"--smoke of {space.path}: {'; '.join(changes)}"}
    text = yamlio.safe_dump(derived, sort_keys=False)
    return Smoke(parse_space(yamlio.safe_load(text), Path(space.path), text), changes, rows, never)


def smoke_resources(space: SearchSpace, cluster: dict) -> tuple[dict, str]:
    """({workers, cpus_per_worker, gpus_per_worker, driver_cpus}, why the worker count changed)."""
    cfg = space.base_config()
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    driver = space.driver_cpus
    if cfg.gpus_per_worker > 0 and gpus >= cfg.gpus_per_worker:
        workers = min(cfg.num_workers, math.floor(gpus / cfg.gpus_per_worker + 1e-9))
        gpus_per_worker, why = cfg.gpus_per_worker, f" (the cluster's {gpus:g} GPUs)"
    else:
        workers = cfg.num_workers if cfg.num_workers == 1 else max(2, min(cfg.num_workers, math.floor(cpus - driver)))
        gpus_per_worker = 0.0
        why = f" (no GPU for the space's workers: gloo on {cpus:g} CPUs)" if cfg.gpus_per_worker > 0 else \
            f" (the cluster's {cpus:g} CPUs)"
    own = cpus - (driver if workers > 1 else 0.0)
    cpus_per_worker = min(cfg.cpus_per_worker, math.floor(own / workers * 20) / 20)  # 0.05 steps
    if cpus_per_worker < field_specs()["cpus_per_worker"][1].low:
        raise SpaceError(f"{space.path}: --smoke runs {workers} workers a trial and this cluster has {cpus:g} "
                         f"CPUs: fewer than 0.5 a worker; run it on a machine with {math.ceil(driver + workers / 2)} "
                         "or more CPUs")
    return {"workers": workers, "cpus_per_worker": cpus_per_worker, "gpus_per_worker": gpus_per_worker,
            "driver_cpus": driver}, why


def method_rows(space: SearchSpace) -> list[dict]:
    """Partial rows giving the verdict each arm the space can have (rxsweep.tuning.confirm's
    groups): ERM, each adversary with a domain label, all with plain sampling when resampling is
    searched, and then adaptive resampling."""
    choices = {p.name: p.values for p in space.params if p.kind == "choice"}
    base = space.base_config()
    plain = {"resampling": "none"} if {"none", "adaptive"} <= set(choices.get("resampling", ())) else {}
    labels = choices.get("domain_label", (base.domain_label,))
    domains = [v for v in labels if v != "none"]
    rows = [{"domain_label": "none", **plain}] if "none" in labels and "domain_label" in choices else []
    if domains:
        for i, adversary in enumerate(choices.get("adversary", (None,))):
            row = {"domain_label": domains[i % len(domains)]} if "domain_label" in choices else {}
            rows.append({**row, **({"adversary": adversary} if adversary else {}), **plain})
    if plain:
        rows.append({"resampling": "adaptive"})
    return [row for row in rows if row]


def free_name(storage: str, name: str) -> str:
    """``NAME-K`` for the first K >= 1 with no sweep at STORAGE/NAME-K: a smoke never reuses or
    removes an earlier smoke's folder."""
    k = 1
    while locations.exists(locations.join(storage, f"{name}-{k}", sweep_files.SWEEP_FILE)):
        k += 1
    return f"{name}-{k}"


def _pin_low(space: SearchSpace, row: dict) -> dict:
    values = {**space.base_config().to_dict(), **row}
    pinned = dict(row)
    for p in space.params:
        if p.name in PINNED_LOW and p.kind != "choice" and space.is_active(p, values, pinned):
            pinned[p.name] = values[p.name] = int(p.low) if p.kind == "int" else p.low
    return pinned


def _resource_default(space: SearchSpace, key: str):
    if key == "driver_cpus":
        return space.driver_cpus
    return getattr(TrainConfig(), RESOURCE_FIELDS[key])
