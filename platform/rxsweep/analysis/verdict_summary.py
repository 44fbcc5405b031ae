"""The verdict in one sentence (verdict.json's ``summary``), built only from the verdict's own words.

The verdict (rxsweep.analysis.verdict) gives each arm one word a judged metric against ERM (its
first arm): "better", "worse", "no detectable difference", or None, which it prints as "not
scored". The sentence says which arms got which words and nothing more: no ranking between arms,
no size of an effect, no word the verdict did not give. "no detectable difference" is never told
as "the same" or "no worse": it stays those words.

    adversaries   DANN, CDANN, and an adaptive-resampling arm built on one of them ("DANN + AR"):
                  each told with all its words (arms with the same words together)
    ERM + AR      told with all its words too (a training-time method under test)
    other arms    the post-hoc corrections, the features baseline and the user's embeddings arms
                  (NAME, NAME + Harmony): told, with all their words, when one of them is
                  "better"; the rest are "no other arm was better"
    not scored    a metric no arm was scored on is said once, at the end

e.g. "Against ERM, no adversary was better: DANN and CDANN were worse on every judged metric;
ERM + Harmony was better on mixing, with no detectable difference elsewhere; no other arm was
better." ("elsewhere", "every" and "any judged metric" only when no metric was left unscored.)
"""

from __future__ import annotations

__all__ = ["summary_sentence"]

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no detectable difference"
#: The order a phrase tells an arm's words in (None: not scored).
ORDER = (BETTER, WORSE, NO_DIFFERENCE, None)
#: The judged metrics as the sentence names them (a metric not listed is named by its key).
LABELS = {"heldout_test_acc": "accuracy", "mixing": "mixing", "replicate_map": "replicate mAP"}
#: Arm methods that are a domain adversary (rxsweep.models.dann.ADVERSARIES; not imported: this
#: module reads a dict), and the adaptive-resampling arm's method, an adversary when its name's
#: base is one ("DANN + AR"; rxsweep.analysis.verdict names it).
ADVERSARIES = ("dann", "cdann")
AR_METHOD = "ar"
ADVERSARY_NAMES = ("DANN", "CDANN")


def summary_sentence(verdict: dict) -> str:
    """One sentence (clauses joined by semicolons, ending in a period) that tells, for the arms of
    ``verdict`` (compute_verdict's dict, or verdict.json read back), which words they got against
    the reference arm on which metrics (module doc); "Not answerable: <note>." when it has no arms.
    Raises ValueError on a word the verdict does not give."""
    arms = verdict.get("arms") or []
    if not arms:
        return f"Not answerable: {str(verdict.get('note') or 'no verdict').rstrip('.')}."
    reference, others = arms[0]["name"], arms[1:]
    if not others:
        return f"Only {reference} was judged: no arm to compare with it."
    metrics = list(verdict.get("metrics") or LABELS)
    words = [[_word(arm, m) for m in metrics] for arm in others]
    unscored = [m for j, m in enumerate(metrics) if all(w[j] is None for w in words)]
    scored = [j for j, m in enumerate(metrics) if m not in unscored]
    if not scored:
        return f"No arm was scored against {reference}: {_names(unscored)} {_were(unscored)} not scored."
    rows = [(arm["name"], tuple(w[j] for j in scored)) for arm, w in zip(others, words)]
    kept = [metrics[j] for j in scored]
    adversaries = [r for r, arm in zip(rows, others) if _is_adversary(arm)]
    rest = [r for r, arm in zip(rows, others) if not _is_adversary(arm)]
    # adaptive resampling is a training-time method under test, as the adversaries are: told with
    # all its words, a "worse" too; post-hoc corrections and the features baseline only when better
    told = [r for r, arm in zip(rows, others)
            if not _is_adversary(arm) and (BETTER in r[1] or arm.get("method") == AR_METHOD)]
    clauses = [_phrase(names, profile, kept, not unscored) for names, profile in _groups(adversaries + told)]
    if not adversaries:
        head = "No adversary arm was judged"
        clauses = [f"{head}; against {reference}, {clauses[0]}", *clauses[1:]] if clauses else \
            [f"{head} and no arm was better than {reference}"]
    elif any(BETTER in profile for _, profile in adversaries) or \
            all(set(profile) == {None} for _, profile in adversaries):
        clauses[0] = f"Against {reference}, {clauses[0]}"
    else:
        clauses[0] = f"Against {reference}, no adversary was better: {clauses[0]}"
    if told or adversaries:
        clauses += ["no other arm was better"] if len(told) < len(rest) else []
    if unscored:
        clauses.append(f"{_names(unscored)} {_were(unscored)} not scored")
    return "; ".join(clauses) + "."


def _word(arm: dict, metric: str) -> str | None:
    word = ((arm.get("metrics") or {}).get(metric) or {}).get("vs_erm")
    if word not in ORDER:
        raise ValueError(f"arm {arm.get('name')!r}, metric {metric!r}: unknown word {word!r}; known: {list(ORDER)}")
    return word


def _is_adversary(arm: dict) -> bool:
    method = arm.get("method")
    base = str(arm.get("name", "")).split(" + ")[0]
    return method in ADVERSARIES or (method == AR_METHOD and base in ADVERSARY_NAMES)


def _groups(rows: list[tuple[str, tuple]]) -> list[tuple[list[str], tuple]]:
    """Arms with the same words together, in the verdict's order of their first arm."""
    groups: dict[tuple, list[str]] = {}
    for name, profile in rows:
        groups.setdefault(profile, []).append(name)
    return [(names, profile) for profile, names in groups.items()]


def _phrase(names: list[str], profile: tuple, metrics: list[str], complete: bool) -> str:
    """'<arms> was better on A but worse on B, with no detectable difference on C and D not scored'.
    ``complete``: ``metrics`` are all the judged metrics (none left out as not scored anywhere),
    so "every judged metric" and "elsewhere" (for two or more) name them all."""
    was = "were" if len(names) > 1 else "was"
    by_word = [(w, [m for m, x in zip(metrics, profile) if x == w]) for w in ORDER]
    by_word = [(w, ms) for w, ms in by_word if ms]
    first, on = by_word[0]
    if first is None:  # the arm was scored on nothing the others were
        return f"{_list(names)} {was} not scored"
    verb = {BETTER: f"{was} better on", WORSE: f"{was} worse on", NO_DIFFERENCE: "had no detectable difference on"}
    if len(by_word) == 1 and complete:
        return f"{_list(names)} {verb[first]} " + ("any" if first == NO_DIFFERENCE else "every") + " judged metric"
    text = f"{_list(names)} {verb[first]} {_names(on)}"
    rest = by_word[1:]
    if rest and rest[0][0] == WORSE:  # only after "better"
        text += f" but worse on {_names(rest[0][1])}"
        rest = rest[1:]
    if complete and [w for w, _ in rest] == [NO_DIFFERENCE] and len(rest[0][1]) > 1:
        return text + ", with no detectable difference elsewhere"
    with_ = [f"no detectable difference on {_names(ms)}" if w == NO_DIFFERENCE else f"{_names(ms)} not scored"
             for w, ms in rest]
    return text + (", with " + " and ".join(with_) if with_ else "")


def _names(metrics: list[str]) -> str:
    return _list([LABELS.get(m, m) for m in metrics])


def _were(items: list) -> str:
    return "were" if len(items) > 1 else "was"


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
