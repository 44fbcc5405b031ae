"""The synthetic RxRx1's experiment x siRNA interaction (rxsweep/data/synth/interaction.py): an siRNA's
phenotype strength varies between experiments by a lognormal factor whose sd the preset sets.

Checked: truth.json records the factors and the preset's sd; the factors have that sd (within a
sampling tolerance computed here) and differ between experiments; they are the ones the images
were rendered with; a channel's intensity shift follows the factor in rendered images; the draws
and the files are deterministic for a seed.

The tiny preset is generated once, at 32x32 (the same content as at its native 64x64: an
image_size override changes resolution only), and the image check renders sites directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from rxsweep.data import rxrx1_facts
from rxsweep.data.synth import PRESETS, generate
from rxsweep.data.synth.batch import draw_experiment_batch, draw_plate_shift
from rxsweep.data.synth.biology import CELL_TYPE_BIOLOGY, P, draw_phenotypes
from rxsweep.data.synth.interaction import POSITIVE_CONTROL_SD_RATIO, draw_interaction
from rxsweep.data.synth.job import PlateTask, render_site
from rxsweep.data.synth.plate_map import make_plan
from rxsweep.data.synth.seeds import CELL_TYPES
from rxsweep.data.synth.writers import truth_file

TINY = PRESETS["tiny"]
SEED = 0
INTENSITY = [P[f"intensity_{name}"] for name in
             ("nucleus", "er", "actin", "nucleoli", "mitochondria", "golgi")]  # channels 1-6


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("kaggle"), "kaggle", "tiny", seed=SEED, image_size=32, workers=2)


@pytest.fixture(scope="module")
def truth(kaggle) -> dict:
    return json.loads(truth_file(kaggle).read_text())


@pytest.fixture(scope="module")
def model():
    """The generator's own draws for tiny / SEED: plan, phenotypes, interaction."""
    plan = make_plan(TINY, SEED)
    return plan, draw_phenotypes(plan.sirnas, TINY.null_fraction, SEED), draw_interaction(plan, TINY, SEED)


def _factors(truth: dict) -> np.ndarray:
    """[experiment, sirna_id] factors from truth.json, experiments in truth's order."""
    record = truth["sirna_experiment"]["factors"]
    return np.array([record[e["name"]] for e in truth["experiments"]])


def _well_types(truth: dict) -> np.ndarray:
    return np.array([s["well_type"] for s in truth["sirnas"]])


def _hash_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ truth.json
def test_truth_records_the_interaction(truth):
    record = truth["sirna_experiment"]
    assert TINY.sirna_experiment_sd > 0 and TINY.sirna_experiment_turn > 0
    assert record["sd"] == truth["preset"]["sirna_experiment_sd"] == TINY.sirna_experiment_sd
    assert record["turn"] == truth["preset"]["sirna_experiment_turn"] == TINY.sirna_experiment_turn
    assert record["sd_by_well_type"] == {
        "treatment": TINY.sirna_experiment_sd,
        "positive_control": TINY.sirna_experiment_sd * POSITIVE_CONTROL_SD_RATIO,
        "negative_control": 0.0,
    }
    assert sorted(record["factors"]) == sorted(e["name"] for e in truth["experiments"])
    assert all(len(row) == TINY.n_classes for row in record["factors"].values())


def test_factors_have_the_preset_sd(truth):
    """log(factor) ~ N(0, sd) per well type; tolerance: 4 standard errors of the sample sd and mean."""
    logs, types = np.log(_factors(truth)), _well_types(truth)
    for well_type, sd in (("treatment", TINY.sirna_experiment_sd),
                          ("positive_control", TINY.sirna_experiment_sd * POSITIVE_CONTROL_SD_RATIO)):
        x = logs[:, types == well_type].ravel()
        n = x.size
        se_sd, se_mean = sd / np.sqrt(2 * (n - 1)), sd / np.sqrt(n)
        print(f"{well_type}: n={n}, sd of log factor {x.std(ddof=1):.4f} (preset {sd:.4f} "
              f"+- {4 * se_sd:.4f}), mean {x.mean():+.4f} (+- {4 * se_mean:.4f})")
        assert abs(x.std(ddof=1) - sd) < 4 * se_sd, well_type
        assert abs(x.mean()) < 4 * se_mean, well_type
    # Positive controls stay strong: no factor below 0.6 (5 sd at tiny's 0.4 x 0.25).
    assert np.exp(logs[:, types == "positive_control"]).min() > 0.6
    assert (logs[:, types == "negative_control"] == 0).all()  # the untreated well is the baseline


def test_factors_differ_between_experiments(truth):
    factors, types = _factors(truth), _well_types(truth)
    n_experiments = len(factors)
    for sirna_id in np.flatnonzero(types != "negative_control"):
        assert len(np.unique(factors[:, sirna_id])) == n_experiments, sirna_id
    # Independent between experiments: rows are uncorrelated (|r| of random pairs is small on average).
    treated = np.log(factors[:, types == "treatment"])
    r = np.corrcoef(treated)[np.triu_indices(n_experiments, 1)]
    assert abs(r.mean()) < 0.1


def test_truth_factors_are_the_rendered_ones(truth, model):
    """truth.json holds the factors the generator used, and |effect in e| / |cell-type effect| is
    exactly that factor, with the phenotype's parameters and signs kept."""
    plan, phenotypes, interaction = model
    assert list(interaction.experiments) == [e["name"] for e in truth["experiments"]]
    np.testing.assert_array_equal(interaction.factors, _factors(truth))
    for e, exp in enumerate(plan.experiments):
        for s in plan.sirnas:
            base = phenotypes.effect(s.sirna_id, exp.cell_type)
            effect = interaction.effect(phenotypes, exp.name, exp.cell_type, s.sirna_id)
            assert np.array_equal(np.sign(effect), np.sign(base))  # sparsity and signs kept
            if base.any():
                ratio = np.linalg.norm(effect) / np.linalg.norm(base)
                assert ratio == pytest.approx(interaction.factors[e, s.sirna_id], rel=1e-12)

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    turned = [np.linalg.norm(unit(interaction.effect(phenotypes, exp.name, exp.cell_type, s))
                             - unit(phenotypes.effect(s, exp.cell_type)))
              for exp in plan.experiments for s in range(TINY.n_treatments) if phenotypes.strength[s] > 0]
    assert 0.01 < np.median(turned) < 0.5  # directions turn a little, not a lot


def test_zero_sd_is_the_cell_type_effect(model):
    plan, phenotypes, _ = model
    flat = dataclasses.replace(TINY, sirna_experiment_sd=0.0, sirna_experiment_turn=0.0)
    interaction = draw_interaction(plan, flat, SEED)
    assert (interaction.factors == 1).all()
    for exp in plan.experiments[:3]:
        for s in plan.sirnas:
            assert np.array_equal(interaction.effect(phenotypes, exp.name, exp.cell_type, s.sirna_id),
                                  phenotypes.effect(s.sirna_id, exp.cell_type))


# ------------------------------------------------------------------------------------- images
def _background_corrected_means(image: np.ndarray) -> np.ndarray:
    """[6] channel means above background; background = a low quantile of the lightly smoothed
    channel (smoothing first, so read noise does not drag the quantile below the true offset)."""
    smooth = np.stack([ndimage.gaussian_filter(ch, 2.0) for ch in image])
    return image.reshape(6, -1).mean(1) - np.quantile(smooth.reshape(6, -1), 0.05, axis=1)


def test_a_channel_intensity_follows_the_factor(model):
    """For the treatment with the largest effect on one channel's brightness, render N sites of it
    and N untreated sites in every experiment (same batch, plate 1, interior wells), and measure the
    shift of log(channel / an untouched channel) against the untreated well. Divided by the
    expected shift at factor 1, it tracks the recorded factor across experiments."""
    plan, phenotypes, interaction = model
    treatments = [s.sirna_id for s in plan.sirnas if s.well_type == "treatment"]
    score = np.abs(phenotypes.vectors[treatments][:, INTENSITY])
    row, channel = np.unravel_index(score.argmax(), score.shape)
    sirna = treatments[row]
    touched = set(np.flatnonzero(phenotypes.vectors[sirna]))
    reference = next(c for c in range(6) if INTENSITY[c] not in touched)
    wells = [w for w in rxrx1_facts.all_wells() if not rxrx1_facts.is_edge_well(w)][:8]
    pixel_scale, field_area = TINY.cell_scale, (TINY.image_size / TINY.cell_scale / rxrx1_facts.IMAGE_SIZE) ** 2

    measured, recorded = [], []
    for e, exp in enumerate(plan.experiments):
        task = PlateTask(
            seed=SEED, layout="kaggle", root="", image_dir="", experiment=exp.name, key=exp.key, plate=1,
            wells=(), effects=(), biology=CELL_TYPE_BIOLOGY[exp.cell_type],
            batch=draw_experiment_batch(SEED, exp.key), shift=draw_plate_shift(SEED, exp.key, 1),
            image_size=TINY.image_size, pixel_scale=pixel_scale, field_area=field_area)

        def log_ratio(effect: np.ndarray) -> float:
            values = [_background_corrected_means(render_site(task, w, effect, 1).astype(np.float64))
                      for w in wells]
            return float(np.mean([np.log(m[channel]) - np.log(m[reference]) for m in values]))

        effect = interaction.effect(phenotypes, exp.name, exp.cell_type, sirna)
        shift = log_ratio(effect) - log_ratio(np.zeros_like(effect))
        expected = phenotypes.effect(sirna, exp.cell_type)[INTENSITY[channel]]  # at factor 1
        measured.append(shift / expected)
        recorded.append(interaction.factors[e, sirna])
    measured, recorded = np.array(measured), np.array(recorded)
    r = np.corrcoef(measured, recorded)[0, 1]
    slope = np.polyfit(recorded, measured, 1)[0]
    print(f"siRNA {sirna}, channel {channel + 1} (reference {reference + 1}): factors "
          f"{recorded.min():.2f}-{recorded.max():.2f} over {len(recorded)} experiments; measured/expected "
          f"shift vs factor: r = {r:.2f}, slope {slope:.2f}")
    assert len(set(e.cell_type for e in plan.experiments)) == len(CELL_TYPES)
    assert recorded.max() / recorded.min() > 2  # the factor varies enough to be seen
    assert r > 0.6 and slope > 0


# -------------------------------------------------------------------------------- determinism
def test_interaction_draws_are_deterministic_and_per_experiment(model):
    plan, _, interaction = model
    again = draw_interaction(make_plan(TINY, SEED), TINY, SEED)
    np.testing.assert_array_equal(again.factors, interaction.factors)
    np.testing.assert_array_equal(again.turns, interaction.turns)
    # One stream per experiment: an experiment's draws do not depend on which others are planned.
    reversed_plan = dataclasses.replace(plan, experiments=plan.experiments[::-1][:5])
    part = draw_interaction(reversed_plan, TINY, SEED)
    for i, name in enumerate(part.experiments):
        np.testing.assert_array_equal(part.factors[i], interaction.factors[interaction.experiments.index(name)])
    assert not np.array_equal(draw_interaction(plan, TINY, SEED + 1).factors, interaction.factors)


def test_same_seed_gives_the_same_files(kaggle, tmp_path):
    again = generate(tmp_path / "again", "kaggle", "tiny", seed=SEED, image_size=32, workers=1)
    assert truth_file(again).read_bytes() == truth_file(kaggle).read_bytes()
    assert _hash_tree(again) == _hash_tree(kaggle)
