"""Reading a sweep folder (rxsweep.analysis.sweep_folder) on folders written by hand. No Ray."""

from __future__ import annotations

import json

from rxsweep.analysis.sweep_folder import load_sweep
from rxsweep.tuning import sweep_files


def test_a_trial_that_failed_before_writing_its_parameters_is_listed_with_its_error(tmp_path):
    """Tune errors a trial whose actor is lost while it starts (bench/chaos.py: its node's raylet
    killed) before the trial writes params.json; its status.json says why. It was listed nowhere:
    the sweep read as 3 trials of 4, none lost, none errored."""
    sweep = tmp_path / "sweep"
    (sweep / sweep_files.TRIALS_DIR / "576d5aba").mkdir(parents=True)
    (sweep / sweep_files.TRIALS_DIR / "not-a-trial").mkdir()  # nothing in it: not listed
    (sweep / sweep_files.SWEEP_FILE).write_text(json.dumps({"format": sweep_files.FORMAT, "finished": True}))
    status = {"trial_id": "576d5aba", "status": "error", "params": {"domain_label": "experiment", "lr": 0.004},
              "error": "The actor aeb5 is unavailable: RpcError: Connection reset by peer", "last_epoch": None}
    (sweep / sweep_files.TRIALS_DIR / "576d5aba" / sweep_files.STATUS_FILE).write_text(json.dumps(status))
    loaded = load_sweep(sweep)
    assert [(t.trial_id, t.status, t.params, t.history) for t in loaded.trials] == [
        ("576d5aba", "error", {"domain_label": "experiment", "lr": 0.004}, [])]
    assert "Connection reset by peer" in loaded.trials[0].error
    assert loaded.trials[0].method != "erm"  # its parameters say DANN on experiments
