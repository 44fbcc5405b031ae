"""Synthetic RxRx1: rendered cells under batch effects, in the Kaggle or WILDS file layout.

`generate(out, layout, preset, seed)` writes a dataset the readers cannot tell from the real one by
its files, plus ROOT.truth.json (beside the data root, never in it) with every generator parameter.
Held-out experiments differ from training ones by imaging nuisance and by biology: an siRNA's
phenotype strength varies between experiments. Modules, one concern each: presets (sizes), seeds
(keyed random streams), plate_map (design and plate layout), biology (cell types, siRNA
phenotypes), interaction (experiment x siRNA strength), batch (batch effects), render (cells ->
clean signal), job (one plate's work), writers (files of both layouts), truth (truth.json),
generator (orchestration: generate()).
"""

from rxsweep.data.synth.generator import GENERATOR_VERSION, default_image_size, generate
from rxsweep.data.synth.presets import PRESETS, Preset, get_preset

__all__ = ["GENERATOR_VERSION", "PRESETS", "Preset", "default_image_size", "generate", "get_preset"]
