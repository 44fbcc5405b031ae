"""A small CellProfiler LoadData folder written by hand (not by rxsweep's generator), with the faults
real ones have, for the LoadData reader and ingest tests.

    3 sources (S1: batches B1 and B2; S2: B1; S3: B1), one or two plates a batch, 6 wells a plate
    (2 negcon, 1 poscon_cp, 3 trt), 2 sites a well, 5 Cell Painting channels + a brightfield
    plane on some plates (left out by default), 16x16 uint16 TIFFs of known random values.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

CHANNELS = ["OrigAGP", "OrigDNA", "OrigER", "OrigMito", "OrigRNA"]  # the reader's (alphabetical) order
PLATES = {  # barcode -> (source, batch)
    "P1": ("S1", "B1"), "P2": ("S1", "B1"), "P3": ("S1", "B2"), "P4": ("S2", "B1"), "P5": ("S2", "B1"),
    "P6": ("S3", "B1"), "P7": ("S3", "B1"),
}
WELLS = {"A1": ("JCP2022_033924", "negcon"), "A02": ("JCP2022_033924", "negcon"), "B01": ("JCP2022_900001", "poscon_cp"),
         "B02": ("JCP2022_000003", "trt"), "C01": ("JCP2022_000001", "trt"), "C02": ("JCP2022_000002", "trt")}
SIZE = 16
#: Faults, by the site they hit -> the start of the reason rxsweep must give.
FAULTS = {
    "P1_C01_1": "image file missing",
    "P1_C01_2": "image unreadable",               # a truncated TIFF
    "P2_C02_1": "well has no entry in platemap.csv",
    "P2_C02_2": "well has no entry in platemap.csv",
    "P3_B02_1": "image path is outside the data root",
    "P4_C01_2": "no file named in FileName_OrigRNA",
    "P5_B02_1": "Metadata_pert_type 'empty' is none of trt, negcon, poscon*",
    "P5_B02_2": "Metadata_pert_type 'empty' is none of trt, negcon, poscon*",
    **{f"P7_{well}_{site}": "plate's LoadData has channels" for well in
       ["A01", "A02", "B01", "B02", "C01", "C02"] for site in (1, 2)},   # P7 lacks OrigMito
}


def pixels(barcode: str, well: str, site: int, channel: str) -> np.ndarray:
    """The known uint16 plane of a site and channel (a plate-specific camera offset and gain)."""
    rng = np.random.default_rng(zlib.crc32(f"{barcode}/{well}/{site}/{channel}".encode()))
    offset, gain = 100 * int(barcode[1:]), 1 + int(barcode[1:]) / 4
    return (offset + gain * rng.integers(0, 2000, (SIZE, SIZE))).astype(np.uint16)


def write_loaddata(root: Path, outside: Path) -> Path:
    """Write the folder (see the module doc) with every fault of FAULTS; returns ROOT."""
    rows, plate_map = [], []
    for barcode, (source, batch) in PLATES.items():
        folder = f"images/{source}/{batch}/{barcode}"
        channels = CHANNELS[:3] + CHANNELS[4:] if barcode == "P7" else CHANNELS + ["OrigBrightfield"]
        for well, (perturbation, kind) in WELLS.items():
            canonical = well[0] + well[1:].zfill(2)
            if not (barcode == "P2" and canonical == "C02"):
                plate_map.append({"Metadata_Source": source, "Metadata_Plate": barcode, "Metadata_Well": canonical,
                                  "Metadata_JCP2022": perturbation,
                                  "Metadata_pert_type": "empty" if (barcode, canonical) == ("P5", "B02") else kind})
            for site in (1, 2):
                row = {"Metadata_Source": source, "Metadata_Batch": batch, "Metadata_Plate": barcode,
                       "Metadata_Well": well, "Metadata_Site": site}
                for channel in channels:
                    name = f"{canonical}_s{site}_{channel}.tiff"
                    path = root / folder / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tifffile.imwrite(path, pixels(barcode, canonical, site, channel))
                    escape = (barcode, canonical, site) == ("P3", "B02", 1)
                    row[f"FileName_{channel}"] = name
                    row[f"PathName_{channel}"] = str(outside) if escape else folder
                rows.append(row)
        csv = root / "load_data_csv" / source / batch / barcode / "load_data.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([r for r in rows if r["Metadata_Plate"] == barcode]).to_csv(csv, index=False)
    pd.DataFrame(plate_map).to_csv(root / "platemap.csv", index=False)
    p4 = root / "load_data_csv/S2/B1/P4/load_data.csv"
    frame = pd.read_csv(p4, dtype=str, keep_default_na=False)
    frame.loc[(frame["Metadata_Well"] == "C01") & (frame["Metadata_Site"] == "2"), "FileName_OrigRNA"] = ""
    frame.to_csv(p4, index=False)
    p1 = root / "images/S1/B1/P1"
    (p1 / "C01_s1_OrigDNA.tiff").unlink()
    data = (p1 / "C01_s2_OrigER.tiff").read_bytes()
    (p1 / "C01_s2_OrigER.tiff").write_bytes(data[: len(data) // 2])
    outside.mkdir(parents=True, exist_ok=True)
    for channel in CHANNELS + ["OrigBrightfield"]:
        tifffile.imwrite(outside / f"B02_s1_{channel}.tiff", pixels("P3", "B02", 1, channel))
    return root
