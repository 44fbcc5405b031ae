"""The verdict's one-sentence summary (rxsweep.analysis.verdict_summary): told from the verdict's
words only, never more than them.

Most verdicts here are built by hand in the structure compute_verdict writes (``_verdict``; the
last test checks that structure against a verdict computed on tests/test_verdict.py's constructed
sweep folder, no Ray), so each case's words are chosen, not drawn.
"""

from __future__ import annotations

import itertools
import json
import re

import pandas as pd
import pytest

from rxsweep.analysis.report import headline
from rxsweep.analysis.verdict import headline_text, write_verdict
from rxsweep.analysis.verdict_summary import summary_sentence
from rxsweep.tuning import sweep_files
from test_verdict import sweep_dir  # noqa: F401  (the constructed sweep folder, a fixture)

METRICS = ("heldout_test_acc", "mixing", "replicate_map")
B, W, N = "better", "worse", "no detectable difference"
#: Words that would claim more than "no detectable difference" (or a ranking the verdict never made).
OVERCLAIMS = ("same", "equal", "no worse", "without losing", "matched", "best", "beat", "as good")


def _arm(name: str, method: str, *words, correction: str | None = None) -> dict:
    """One arm as compute_verdict writes it; ``words`` against ERM, one a judged metric (None: ERM
    itself, or not scored)."""
    metrics = {}
    for metric, word in zip(METRICS, words):
        metrics[metric] = {"mean": 0.5, "seed_values": [0.5, 0.5], "seed_sd": 0.0, "lo": 0.4, "hi": 0.6,
                           "vs_erm": word,
                           "difference": None if word is None else {"estimate": 0.0, "se": 0.1, "p": 0.5,
                                                                    "p_holm": 1.0}}
    metrics["retrieved_fraction"] = {"mean": 0.2, "seed_values": [0.2, 0.2], "seed_sd": 0.0}
    return {"name": name, "method": method, "config": {}, "seeds": [0, 1] if method != "features" else [0],
            "trial_ids": [f"c_{method}0", f"c_{method}1"] if method != "features" else [],
            "search_trials": 4 if method in ("erm", "dann", "cdann", "ar") else 0,
            "correction": correction, "metrics": metrics}


def _verdict(*arms: dict) -> dict:
    """compute_verdict's dict around ERM (first) and ``arms`` (without its summary)."""
    return {"split": "heldout_test", "experiments": ["T1", "T2"], "n_wells": 32, "search_seeds": [7],
            "n_boot": 200, "level": 0.95, "alpha": 0.05, "correction": "holm", "n_words": 3 * len(arms),
            "resampled": {"seeds": True, "perturbations": True, "experiments_of": []},
            "metrics": list(METRICS), "reported": ["retrieved_fraction"],
            "arms": [_arm("ERM", "erm", None, None, None), *arms]}


def _sphering(*words):
    return _arm("ERM + sphering", "erm+sphering", *words, correction="sphering")


def _harmony(*words):
    return _arm("ERM + Harmony", "erm+harmony", *words, correction="harmony")


FEATURES_WORSE = _arm("features + LR", "features", W, W, W)


def _no_overclaim(sentence: str, verdict: dict) -> None:
    """One sentence, ending in a period, with no word beyond the verdict's: 'better' only where an
    arm got it (or as 'no ... was better'), 'worse' only where an arm got it."""
    assert sentence.endswith(".") and sentence.count(".") == 1 and "\n" not in sentence, sentence
    lowered = sentence.lower()
    assert not [w for w in OVERCLAIMS if w in lowered], sentence
    words = {m.get("vs_erm") for a in verdict["arms"][1:] for m in a["metrics"].values()}
    if B not in words:
        for negation in ("no adversary was better", "no other arm was better", "no arm was better"):
            lowered = lowered.replace(negation, "")
        assert "better" not in lowered, sentence
    if W not in words:
        assert "worse" not in sentence, sentence
    if N not in words:
        assert "detectable" not in sentence, sentence


def test_every_adversary_worse():
    verdict = _verdict(_sphering(N, N, N), _harmony(N, N, N), _arm("DANN", "dann", W, W, W),
                       _arm("CDANN", "cdann", W, W, W), FEATURES_WORSE)
    sentence = summary_sentence(verdict)
    assert sentence == ("Against ERM, no adversary was better: DANN and CDANN were worse on every judged metric; "
                        "no other arm was better.")
    _no_overclaim(sentence, verdict)


def test_one_adversary_better_on_accuracy_but_worse_on_mixing():
    verdict = _verdict(_sphering(N, N, N), _harmony(N, N, N), _arm("DANN", "dann", B, W, N),
                       _arm("CDANN", "cdann", N, N, N), FEATURES_WORSE)
    sentence = summary_sentence(verdict)
    assert sentence == ("Against ERM, DANN was better on accuracy but worse on mixing, with no detectable "
                        "difference on replicate mAP; CDANN had no detectable difference on any judged metric; "
                        "no other arm was better.")
    assert len(sentence) <= 200
    _no_overclaim(sentence, verdict)


def test_no_detectable_difference_everywhere_is_never_the_same():
    verdict = _verdict(_sphering(N, N, N), _harmony(N, N, N), _arm("DANN", "dann", N, N, N),
                       _arm("CDANN", "cdann", N, N, N), _arm("features + LR", "features", N, N, N))
    sentence = summary_sentence(verdict)
    assert sentence == ("Against ERM, no adversary was better: DANN and CDANN had no detectable difference on any "
                        "judged metric; no other arm was better.")
    assert "worse" not in sentence
    _no_overclaim(sentence, verdict)


def test_a_post_hoc_arm_that_mixes_better_is_told_with_all_its_words():
    verdict = _verdict(_sphering(N, N, N), _harmony(N, B, N), _arm("DANN", "dann", W, W, W),
                       _arm("CDANN", "cdann", W, W, W), FEATURES_WORSE)
    sentence = summary_sentence(verdict)
    assert sentence == ("Against ERM, no adversary was better: DANN and CDANN were worse on every judged metric; "
                        "ERM + Harmony was better on mixing, with no detectable difference elsewhere; "
                        "no other arm was better.")
    _no_overclaim(sentence, verdict)
    # its other words are said too: a loss of biology is never left out
    verdict = _verdict(_sphering(N, N, N), _harmony(N, B, W), _arm("DANN", "dann", W, W, W))
    sentence = summary_sentence(verdict)
    assert "ERM + Harmony was better on mixing but worse on replicate mAP, with no detectable difference " \
           "on accuracy" in sentence
    _no_overclaim(sentence, verdict)


def test_both_corrections_better_at_mixing_share_one_phrase():
    verdict = _verdict(_sphering(N, B, N), _harmony(N, B, N), _arm("DANN", "dann", N, N, N))
    sentence = summary_sentence(verdict)
    assert sentence == ("Against ERM, no adversary was better: DANN had no detectable difference on any judged "
                        "metric; ERM + sphering and ERM + Harmony were better on mixing, with no detectable "
                        "difference elsewhere.")
    _no_overclaim(sentence, verdict)


def test_metrics_not_scored():
    # mixing scored for no arm (a test split that cannot be mixed): said once, at the end
    verdict = _verdict(_sphering(N, None, N), _harmony(N, None, N), _arm("DANN", "dann", W, None, N),
                       _arm("DANN + AR", "ar", B, None, None))
    sentence = summary_sentence(verdict)
    assert sentence == ("Against ERM, DANN was worse on accuracy, with no detectable difference on replicate mAP; "
                        "DANN + AR was better on accuracy, with replicate mAP not scored; no other arm was better; "
                        "mixing was not scored.")
    assert "elsewhere" not in sentence and "every" not in sentence  # they would cover mixing
    _no_overclaim(sentence, verdict)
    # nothing scored at all
    verdict = _verdict(_sphering(None, None, None), _arm("DANN", "dann", None, None, None))
    sentence = summary_sentence(verdict)
    assert sentence == "No arm was scored against ERM: accuracy, mixing and replicate mAP were not scored."
    _no_overclaim(sentence, verdict)
    # an adversary scored on nothing the others were: not "no adversary was better"
    verdict = _verdict(_sphering(N, N, N), _arm("DANN", "dann", None, None, None))
    assert summary_sentence(verdict) == "Against ERM, DANN was not scored; no other arm was better."


def test_a_verdict_without_an_adversary():
    verdict = _verdict(_sphering(N, N, N), _harmony(N, B, N), FEATURES_WORSE)
    sentence = summary_sentence(verdict)
    assert sentence == ("No adversary arm was judged; against ERM, ERM + Harmony was better on mixing, with no "
                        "detectable difference elsewhere; no other arm was better.")
    _no_overclaim(sentence, verdict)
    verdict = _verdict(_sphering(N, N, N), FEATURES_WORSE)
    assert summary_sentence(verdict) == "No adversary arm was judged and no arm was better than ERM."


def test_verdicts_with_nothing_to_compare():
    assert summary_sentence({"split": "heldout_test", "arms": [],
                             "note": "no completed ERM confirmation run: nothing to compare against"}) == \
        "Not answerable: no completed ERM confirmation run: nothing to compare against."
    assert summary_sentence(_verdict()) == "Only ERM was judged: no arm to compare with it."


def test_adaptive_resampling_is_an_adversary_only_on_one():
    on_dann = _verdict(_sphering(N, N, N), _arm("DANN + AR", "ar", N, N, N))
    assert summary_sentence(on_dann).startswith("Against ERM, no adversary was better: DANN + AR had no detectable")
    on_erm = _verdict(_sphering(N, N, N), _arm("ERM + AR", "ar", B, N, N))
    assert summary_sentence(on_erm) == ("No adversary arm was judged; against ERM, ERM + AR was better on accuracy, "
                                        "with no detectable difference elsewhere; no other arm was better.")
    worse = _verdict(_sphering(N, N, N), _arm("DANN", "dann", N, N, N), _arm("ERM + AR", "ar", W, N, W))
    assert summary_sentence(worse) == (  # a worse AR arm is said, as plainly as a better one
        "Against ERM, no adversary was better: DANN had no detectable difference on any judged metric; ERM + AR "
        "was worse on accuracy and replicate mAP, with no detectable difference on mixing; no other arm was better.")


def test_the_arm_names_are_the_verdicts():
    verdict = _verdict(_arm("ERM + Harmony", "erm+harmony", N, B, N, correction="harmony"),
                       _arm("DANN", "dann", B, N, N))
    verdict["arms"][0]["name"] = "ERM (plain)"
    sentence = summary_sentence(verdict)
    assert sentence.startswith("Against ERM (plain), DANN was better on accuracy")
    assert "ERM + Harmony was better on mixing" in sentence


def test_an_unknown_word_is_refused():
    verdict = _verdict(_arm("DANN", "dann", "slightly better", N, N))
    with pytest.raises(ValueError, match="unknown word 'slightly better'"):
        summary_sentence(verdict)


def test_every_combination_of_words_says_no_more_than_them():
    """Two adversaries and a correction, each word of each metric: one sentence, every arm with a
    'better' or 'worse' word named, and no claim the words do not make."""
    profiles = list(itertools.product((B, W, N, None), repeat=3))
    for dann, cdann, harmony in itertools.islice(itertools.product(profiles, profiles[::7], profiles[::5]), 0, None, 3):
        verdict = _verdict(_sphering(N, N, N), _harmony(*harmony), _arm("DANN", "dann", *dann),
                           _arm("CDANN", "cdann", *cdann))
        sentence = summary_sentence(verdict)
        _no_overclaim(sentence, verdict)
        for name, words in (("DANN", dann), ("CDANN", cdann), ("ERM + Harmony", harmony)):
            if B in words or (W in words and name != "ERM + Harmony"):
                assert re.search(rf"(^|[ ,;]){re.escape(name)}( |,)", sentence), (name, sentence)
        if B not in dann + cdann and {W, N} & set(dann + cdann):
            assert "no adversary was better" in sentence, sentence


def test_the_written_verdict_carries_its_summary_and_the_headline_shows_it_first(sweep_dir):  # noqa: F811
    computed = write_verdict(sweep_dir, n_boot=20, workers=1)
    written = json.loads((sweep_dir / sweep_files.VERDICT_FILE).read_text())
    assert written["summary"] == computed["summary"] == summary_sentence(written) == summary_sentence(computed)
    # DANN is right on every test treatment well, ERM on half or a quarter of them
    assert written["summary"].startswith("Against ERM, DANN was better on accuracy")
    _no_overclaim(written["summary"], written)
    assert headline_text(written).splitlines()[0] == written["summary"]
    box = headline(pd.DataFrame(), written)
    assert box.index("Did the model stop seeing the batch?") < box.index(written["summary"]) < box.index("Judged on")
    # the structure the hand-made verdicts above are built in is the one compute_verdict writes
    made = _verdict(_sphering(N, N, N))
    assert set(written) - {"summary"} == set(made)
    assert set(written["arms"][1]) == set(made["arms"][1])
    for metric, record in written["arms"][1]["metrics"].items():
        assert set(record) == set(made["arms"][1]["metrics"][metric]), metric
