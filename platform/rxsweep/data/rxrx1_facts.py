"""The RxRx1 experimental design, in one place.

Every count here is a fact about the public RxRx1 release (Taylor et al. 2019; rxrx.ai; the Kaggle
"Recursion Cellular Image Classification" competition; WILDS rxrx1_v1.0). The readers validate
against these facts and the synthetic generator reproduces them, so neither hard-codes its own copy.
"""

from __future__ import annotations

import re

#: Experiments (batches) per cell type in the full release: 24 + 11 + 11 + 5 = 51.
EXPERIMENTS_PER_CELL_TYPE: dict[str, int] = {"HUVEC": 24, "RPE": 11, "HEPG2": 11, "U2OS": 5}
#: Of those, how many are in the Kaggle train set (the rest are Kaggle test = WILDS val + test).
TRAIN_EXPERIMENTS_PER_CELL_TYPE: dict[str, int] = {"HUVEC": 16, "RPE": 7, "HEPG2": 7, "U2OS": 3}

PLATES_PER_EXPERIMENT = 4
SITES_PER_WELL = 2
#: Rows B..O and columns 02..23: the outer ring of a 384-well plate (16 x 24) is unused.
PLATE_ROWS = "BCDEFGHIJKLMNO"
PLATE_COLUMNS = tuple(range(2, 24))
WELLS_PER_PLATE = len(PLATE_ROWS) * len(PLATE_COLUMNS)  # 14 * 22 = 308

N_TREATMENT_SIRNAS = 1108
N_PLATE_GROUPS = 4  # the 1,108 treatments form 4 groups of 277, one group per plate
TREATMENTS_PER_PLATE = N_TREATMENT_SIRNAS // N_PLATE_GROUPS  # 277
N_POSITIVE_CONTROLS = 30  # on every plate
N_NEGATIVE_CONTROLS = 1  # one untreated well a plate
#: Label ids as in Kaggle and WILDS: 0..1107 treatments, 1108..1137 positive controls, 1138 empty.
N_CLASSES = N_TREATMENT_SIRNAS + N_POSITIVE_CONTROLS + N_NEGATIVE_CONTROLS  # 1139

CHANNELS: tuple[str, ...] = ("nucleus", "er", "actin", "nucleoli", "mitochondria", "golgi")
N_CHANNELS = len(CHANNELS)
IMAGE_SIZE = 512  # Kaggle / rxrx.ai images, per channel
WILDS_IMAGE_SIZE = 256  # WILDS images: RGB of channels 1-3, downsampled

WELL_TYPES = ("treatment", "positive_control", "negative_control")

_WELL_RE = re.compile(r"^([A-P])(\d{2})$")
_EXPERIMENT_RE = re.compile(r"^([A-Za-z0-9]+)-(\d+)$")


def all_wells() -> list[str]:
    """Every well in the used area of a plate, row-major: B02, B03, ..., O23 (14 x 22 = 308)."""
    return [f"{row}{col:02d}" for row in PLATE_ROWS for col in PLATE_COLUMNS]


def is_edge_well(well: str) -> bool:
    """True for wells on the outermost used ring (rows B/O, columns 02/23): the edge effect zone."""
    row, col = well[0], int(well[1:])
    return row in (PLATE_ROWS[0], PLATE_ROWS[-1]) or col in (PLATE_COLUMNS[0], PLATE_COLUMNS[-1])


def parse_well(well: str) -> tuple[str, int]:
    """'B02' -> ('B', 2). Raises ValueError naming the well if it is not a plate position."""
    match = _WELL_RE.match(well)
    if not match:
        raise ValueError(f"well {well!r} is not a plate position like 'B02'")
    return match.group(1), int(match.group(2))


def cell_type_of(experiment: str) -> str:
    """'HEPG2-01' -> 'HEPG2'. Raises ValueError if the name is not '<CELLTYPE>-<NN>'."""
    match = _EXPERIMENT_RE.match(experiment)
    if not match:
        raise ValueError(f"experiment {experiment!r} is not named like 'HEPG2-01'")
    return match.group(1)


def experiment_name(cell_type: str, number: int) -> str:
    """('HEPG2', 1) -> 'HEPG2-01', the zero-padded form both public layouts use."""
    return f"{cell_type}-{number:02d}"


assert len(all_wells()) == WELLS_PER_PLATE
assert TREATMENTS_PER_PLATE + N_POSITIVE_CONTROLS + N_NEGATIVE_CONTROLS == WELLS_PER_PLATE
