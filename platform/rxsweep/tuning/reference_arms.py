"""The verdict's arms that are not trained by the sweep, made once a sweep on its split: the
hand-made-features baseline and each --embeddings NAME=FILE arm (both a linear probe,
rxsweep.training.features_baseline.linear_probe). A resumed sweep keeps what is written."""

from __future__ import annotations

from pathlib import Path

from rxsweep.training.plan import RunPlan
from rxsweep.tuning import sweep_files
from rxsweep.tuning.progress import say


def features_baseline_once(sweep_dir: Path, data: str, plan: RunPlan, seed: int, echo: bool) -> None:
    """The hand-made-features baseline of this split, once a sweep (rxsweep.training.features_baseline)."""
    from rxsweep.training.features_baseline import (features_baseline, features_baseline_scores,
                                                    read_features_baseline, write_features_baseline)

    path = sweep_dir / sweep_files.BASELINE_EMBEDDINGS
    if read_features_baseline(path) is not None:
        return
    table = features_baseline(data, plan.splits, seed=seed)
    write_features_baseline(path, table)
    scores = features_baseline_scores(table)
    say(echo, f"hand-made features + logistic regression: held-out treatment accuracy "
              f"{scores['heldout_val_acc']:.3f} (validation), {scores['heldout_test_acc']:.3f} (test)")


def embeddings_arms_once(sweep_dir: Path, data: str, plan: RunPlan, seed: int, embeddings: dict, echo: bool) -> None:
    """Each --embeddings NAME=FILE through the features baseline's linear probe, on this split, once
    a sweep (rxsweep.training.embeddings_arm): an arm already written is kept, if made from the same file."""
    from rxsweep.training.embeddings_arm import embeddings_arm, file_sha256, read_embeddings_arm, write_embeddings_arm
    from rxsweep.training.features_baseline import features_baseline_scores

    for name, source in embeddings.items():
        path = sweep_files.embeddings_arm_path(sweep_dir, name)
        done = read_embeddings_arm(path)
        if done is not None:
            if done.attrs.get("sha256") not in (None, file_sha256(source)):
                raise ValueError(f"--embeddings {name}={source}: this sweep's arm {name!r} was made from another "
                                 f"file ({done.attrs.get('source')}, sha256 {done.attrs['sha256'][:12]}...); give "
                                 f"this file another NAME, or delete {path.parent} to remake the arm")
            continue
        table = embeddings_arm(data, plan.splits, source, name, seed=seed)
        write_embeddings_arm(path, table)
        scores = features_baseline_scores(table)
        say(echo, f"embeddings {name} + logistic regression: held-out treatment accuracy "
                  f"{scores['heldout_val_acc']:.3f} (validation), {scores['heldout_test_acc']:.3f} (test)")
