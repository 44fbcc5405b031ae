"""Random streams keyed by what they are for, never by the order work happens in.

Every random draw in the generator comes from `rng_for(seed, STREAM, *key)`: the same seed gives the
same site whichever worker renders it and whatever else is generated, so outputs are byte-identical
across worker counts and a site can be re-rendered on its own.
"""

from __future__ import annotations

import numpy as np

from rxsweep.data import rxrx1_facts

# Stream tags: one per kind of draw, so e.g. adding a draw to the batch model cannot shift siRNA
# effects. Values are part of the output's identity: never renumber them.
DESIGN = 1  # siRNA names, plate-group membership
PHENOTYPE = 2  # one siRNA's effect vector
BATCH = 3  # one experiment's batch parameters
PLATE = 4  # one plate's group order slot, shift and well positions
SITE = 5  # the cells and noise of one site
INTERACTION = 6  # one experiment's siRNA strength factors and direction turns (interaction.py)

CELL_TYPES: tuple[str, ...] = tuple(rxrx1_facts.EXPERIMENTS_PER_CELL_TYPE)


def rng_for(seed: int, stream: int, *key: int) -> np.random.Generator:
    """A Generator determined by (seed, stream, key); `key` is a tuple of non-negative ints."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(stream, *key)))


def experiment_key(cell_type: str, number: int) -> tuple[int, int]:
    """('HEPG2', 1) -> (2, 1): a stable integer key for an experiment."""
    return CELL_TYPES.index(cell_type), number
