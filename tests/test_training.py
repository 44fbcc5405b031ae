"""Tests for rxsweep.training: config, preflight errors, DANN/ERM runs through Ray Train, resume.

One local Ray instance and one tiny synthetic shard set (Kaggle layout, 6 channels, 64x64) are
shared by the module. Most runs name their held-out experiments (one each, to keep evaluation
short); the CLI run uses the default split (one validation and one test experiment a cell type).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from rxsweep.data.stream import open_shards
from rxsweep.fileio import json_safe
from rxsweep.training import checkpointing as ckpt
from rxsweep.training import run_files
from rxsweep.training.config import ConfigError, TrainConfig, field_specs, hparam_specs
from rxsweep.training.recipe import lambda_at, lr_factor, train_step
from rxsweep.training.run_files import METRICS_FILE, read_history
from rxsweep.training.runner import train
from rxsweep.training.trainer import MetricsLog

SPLIT = {"val_experiments": ["HUVEC-02"], "test_experiments": ["HEPG2-01"]}
# Small heads and 6 steps an epoch keep a run to seconds of compute; the rest is the default.
TINY = {**SPLIT, "epochs": 2, "batch_size": 16, "max_steps_per_epoch": 6, "embedding_dim": 64,
        "domain_width": 256}
TIMING = {"images_per_s", "train_time_s", "eval_time_s", "epoch_time_s", "ar_time_s"}
EVERY_METRIC = {"epoch", "train_loss", "label_loss", "domain_loss", "train_acc", "domain_acc", "lambda",
                "val_acc", "heldout_val_acc", "heldout_test_acc", "heldout_val_top5", "heldout_test_top5",
                "heldout_val_acc/HUVEC", "heldout_test_acc/HEPG2", "images_per_s"}


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=3, log_to_driver=False, include_dashboard=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ray_session) -> Path:
    from rxsweep.data.ingest import ingest
    from rxsweep.data.synth import generate

    base = tmp_path_factory.mktemp("training-data")
    root = generate(base / "raw", layout="kaggle", preset="tiny", seed=0)
    ingest(root, base / "shards", progress=False)
    return base / "shards"


@pytest.fixture(scope="module")
def dann_run(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "dann"
    final = train(shards, out, overrides=TINY, echo=False)
    return out, final


def history(run_dir: Path) -> list[dict]:
    return read_history(run_dir / METRICS_FILE)


def untimed(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in TIMING}


# --------------------------------------------------------------------------- config (no Ray)

def test_config_defaults_roundtrip(tmp_path):
    cfg = TrainConfig()
    assert cfg.method == "dann" and TrainConfig(domain_label="none").method == "erm"
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert TrainConfig.from_yaml(path) == cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.with_overrides({"lr": 0.01}).lr == 0.01
    assert cfg.with_overrides(val_experiments=["A"]).val_experiments == ("A",)


def test_every_field_is_declared_with_help_and_hparams_have_a_domain():
    specs = field_specs()
    assert set(specs) == set(TrainConfig().to_dict())
    for name, (default, spec) in specs.items():
        assert spec.help, name
    for name, (default, spec) in hparam_specs().items():
        assert spec.choices is not None or (spec.low is not None and spec.high is not None), name
    for name in ("seed", "num_workers", "cpus_per_worker", "gpus_per_worker", "epochs", "batch_size",
                 "val_experiments", "test_experiments"):
        assert not specs[name][1].searchable, name
    for name in ("lambda_max", "lr", "domain_label", "lambda_schedule", "domain_lr_mult"):
        assert specs[name][1].searchable, name


@pytest.mark.parametrize("values, message", [
    ({"lrr": 0.1}, "unknown training config field 'lrr' (did you mean 'lr'?)"),
    ({"lr": "fast"}, "lr must be a number"),
    ({"epochs": 2.5}, "epochs must be an integer"),
    ({"flip": "yes"}, "flip must be true/false"),
    ({"val_experiments": "HUVEC-01"}, "val_experiments must be a list of str"),
    ({"backbone": "resnet19"}, "backbone='resnet19' is not one of"),
    ({"domain_label": "well"}, "domain_label='well' is not one of"),
    ({"lambda_max": -1}, "lambda_max=-1.0 is out of range"),
    ({"batch_size": 1}, "batch_size=1 is out of range"),
])
def test_config_rejects(values, message):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict(values)
    assert message in str(e.value)


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lr: 0.1\nmomentun: 0.9\n")
    with pytest.raises(ConfigError,
                       match=r"bad.yaml: unknown training config field 'momentun' \(did you mean 'momentum'"):
        TrainConfig.from_yaml(path)


def test_lr_and_lambda_schedules():
    assert lr_factor(0, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 0.1) == pytest.approx(0.0)
    assert lambda_at(TrainConfig(domain_label="none"), 50, 100) == 0.0
    assert lambda_at(TrainConfig(lambda_schedule="step", lambda_max=2.0), 50, 100) == 2.0
    assert lambda_at(TrainConfig(), 0, 100) == 0.0


def _controls_only_dann(adversary: str):
    """A small DANN whose domain loss sees control wells only, with a zero-lr optimiser (a step
    changes no weight): (cfg, model, optimizer, scheduler)."""
    from rxsweep.models import DANN, create_backbone

    cfg = TrainConfig(domain_label="plate", adversary=adversary, domain_sites="controls", domain_dropout=0.0)
    torch.manual_seed(0)
    model = DANN(create_backbone("cnn-small", 6), n_classes=12, domain_label="plate", n_domains=3,
                 domain_width=16, domain_dropout=0.0, adversary=adversary)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    return cfg, model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


@pytest.mark.parametrize("adversary", ["dann", "cdann"])
def test_train_step_domain_loss_is_the_adversary_loss_over_the_controls(adversary):
    """train_step's domain loss is adversary_domain_loss over the sites domain_sites keeps, with
    those sites' labels: class-balanced for cdann, the plain mean for dann."""
    from rxsweep.models.dann import adversary_domain_loss

    cfg, model, optimizer, scheduler = _controls_only_dann(adversary)
    x = torch.randn(10, 6, 16, 16)
    labels = torch.tensor([0, 1, 2, 10, 10, 10, 10, 10, 11, 11])  # 3 treatments, 5 + 2 controls
    domains = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    is_treatment = (labels < 10).long()
    with torch.no_grad():
        logits = model(x, labels=labels)["domain_logits"][3:]
    expected = adversary_domain_loss(logits, domains[3:], labels[3:], adversary)
    mean = torch.nn.functional.cross_entropy(logits, domains[3:])
    out = train_step(model, optimizer, scheduler, x, labels, domains, cfg, torch.device("cpu"),
                     is_treatment=is_treatment)
    torch.testing.assert_close(out.domain_loss, expected)
    assert out.domain_seen.item() == 7
    assert (abs(out.domain_loss - mean) > 1e-4) == (adversary == "cdann")


def test_rng_state_survives_weights_only(tmp_path):
    g = torch.Generator().manual_seed(3)
    state = ckpt.rng_state({"augment": g})
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), torch.rand(2, generator=g))
    import numpy as np
    import random
    expected_np, expected_py = np.random.rand(), random.random()
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), {"augment": g})
    assert torch.equal(torch.rand(3), expected[0]) and torch.equal(torch.rand(2, generator=g), expected[1])
    assert np.random.rand() == expected_np and random.random() == expected_py


def test_metrics_log_keeps_each_epoch_once(tmp_path):
    log = MetricsLog(str(tmp_path))
    for epoch in (1, 2, 2, 3):  # epoch 2 repeated, as after a restart
        log.after_report(None, [{"epoch": epoch, "x": float(epoch), "d": math.nan}], None)
    rows = history(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[0]["d"] is None


# --------------------------------------------------------------------------- preflight (no workers)

@pytest.mark.parametrize("overrides, message", [
    ({"lr_max": 1.0}, "unknown training config field 'lr_max'"),
    ({"epochs": "two"}, "epochs must be an integer"),
    ({"in_channels": 3}, "in_channels=3, but the shards in"),
    ({"test_experiments": [], "n_test_per_cell_type": 0}, "split 'heldout_test' has no sites"),
    ({"holdout_fraction": 0.0}, "split 'val' has no sites"),
    ({"backbone": "resnet-18"}, "did you mean 'resnet18'?"),
    ({"batch_size": 4096}, "no full batch per epoch"),
    ({"val_experiments": [], "test_experiments": [], "n_val_per_cell_type": 5},
     "splits: cell type HEPG2 has 6 labelled experiment(s) left: holding out 5 for val and 1 for test"),
])
def test_bad_config_fails_before_any_worker(shards, tmp_path, overrides, message):
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as e:
        train(shards, out, overrides={**TINY, **overrides}, echo=False)
    assert message in str(e.value)
    assert not out.exists()  # refused before the run folder was claimed, so before any worker


# --------------------------------------------------------------------------- runs through Ray Train

def test_dann_run_reports_every_metric(dann_run, shards):
    out, final = dann_run
    rows = history(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert EVERY_METRIC <= set(row), EVERY_METRIC - set(row)
        assert row["domain_loss"] > 0 and 0 <= row["domain_acc"] <= 1 and row["lambda"] > 0
        assert 0 <= row["heldout_val_acc"] <= row["heldout_val_top5"] <= 1
        assert row["images_per_s"] > 0
    assert untimed(final) == untimed(json_safe(rows[-1]))
    # RUN_DIR layout
    assert TrainConfig.from_yaml(out / "config.yaml") == TrainConfig.from_dict(TINY)
    assert json.loads((out / "result.json").read_text())["metrics"]["epoch"] == 2
    last = out / run_files.checkpoint_dir_name(2)
    state = ckpt.load_state(last)
    assert state["epoch"] == 2 and state["step"] == rows[-1]["step"] and "rng" in state
    assert TrainConfig.from_yaml(last / run_files.CONFIG_FILE) == TrainConfig.from_dict(TINY)
    # the split as a value: one row a site of the shard index, the held-out sites as the embeddings say
    splits = run_files.read_splits(out)
    index = open_shards(shards)
    assert sorted(splits["site_id"]) == sorted(index.table["site_id"]) and splits["site_id"].is_unique
    assert list(splits.columns) == list(run_files.SPLIT_COLUMNS)
    # held-out embeddings, in the final checkpoint and copied to RUN_DIR
    table = pq.read_table(out / run_files.EMBEDDINGS_FILE)
    assert table.equals(pq.read_table(last / run_files.EMBEDDINGS_FILE))
    assert table.column_names == ["site_id", "well_id", "experiment", "plate", "well", "cell_type",
                                  "well_type", "split", "label", "prediction", "embedding", "log_probs"]
    frame = table.to_pandas()
    by_site = splits.set_index("site_id")["split"]
    assert (by_site.loc[frame["site_id"]].to_numpy() == frame["split"].to_numpy()).all()
    log_probs = np.stack(frame["log_probs"]).astype(np.float32)
    assert log_probs.shape == (len(frame), 24)  # tiny: 24 classes
    assert np.allclose(np.exp(log_probs).sum(axis=1), 1.0, atol=0.02)  # float16 log-softmax
    assert (log_probs.argmax(axis=1) == frame["prediction"]).mean() > 0.95  # up to float16 ties
    assert set(frame["experiment"]) == {"HUVEC-02", "HEPG2-01"}
    assert frame.groupby("split")["experiment"].first().to_dict() == {"heldout_val": "HUVEC-02",
                                                                       "heldout_test": "HEPG2-01"}
    assert len(frame) == frame["site_id"].nunique() == 144  # every held-out site exactly once
    assert table.schema.field("embedding").type.list_size == 64
    assert (frame["prediction"] == frame["label"]).mean() == pytest.approx(
        (rows[-1]["heldout_val_acc_all"] + rows[-1]["heldout_test_acc_all"]) / 2)


def test_erm_run_reports_every_metric(shards, tmp_path):
    out = tmp_path / "erm"
    final = train(shards, out, overrides={**TINY, "domain_label": "none"}, echo=False)
    rows = history(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert EVERY_METRIC <= set(row)
        assert row["domain_loss"] is None and row["domain_acc"] is None and row["lambda"] == 0.0
        assert row["train_loss"] == pytest.approx(row["label_loss"])
    assert final["domain_loss"] is None  # NaN in Ray, null on disk
    assert (out / run_files.EMBEDDINGS_FILE).exists()


def _kill_after_first_checkpoint(shards: Path, out: Path, overrides: dict, ray_session) -> None:
    """Run `train` in a subprocess and SIGKILL it as soon as epoch 1's checkpoint is reported."""
    script = textwrap.dedent(f"""
        from rxsweep.training.runner import train
        train({str(shards)!r}, {str(out)!r}, overrides={overrides!r})
    """)
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    log_path = out.parent / f"{out.name}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 180
    try:
        while not [r for r in history(out) if r["epoch"] == 1]:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "no first checkpoint within 180 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert [r["epoch"] for r in history(out)] == [1], "the run got past epoch 1 before the kill"
    assert (out / run_files.checkpoint_dir_name(1) / run_files.STATE_FILE).exists()
    assert not (out / "result.json").exists()


def test_killed_run_resumes_at_epoch_2_with_the_same_metrics(shards, tmp_path, dann_run, ray_session, capsys):
    """Kill the driver for real after its first checkpoint; the rerun must continue at epoch 2 and,
    the loop being seeded per (seed, epoch, rank), reproduce the uninterrupted run's metrics."""
    out = tmp_path / "killed"
    _kill_after_first_checkpoint(shards, out, TINY, ray_session)
    capsys.readouterr()
    train(shards, out, overrides=TINY)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch=")]
    assert [line.split()[0] for line in printed] == ["epoch=2/2"]  # resumed, not restarted
    rows = history(out)
    assert [r["epoch"] for r in rows] == [1, 2]  # each epoch exactly once
    reference = history(dann_run[0])
    assert [untimed(r) for r in rows] == [untimed(r) for r in reference]  # same seed, same metrics


def test_completed_run_is_not_redone_and_other_config_is_refused(dann_run, shards):
    out, final = dann_run
    assert untimed(train(shards, out, overrides=TINY, echo=False)) == untimed(json_safe(final))
    with pytest.raises(ConfigError, match="holds a run with another config"):
        train(shards, out, overrides={**TINY, "lr": 0.01}, echo=False)


# --------------------------------------------------------------------------- the `rxsweep train` command

def test_cli_train_parses_typed_overrides_and_uses_the_default_split(shards, tmp_path, capsys):
    from rxsweep.cli import main

    out = tmp_path / "cli"
    sets = ["epochs=1", "batch_size=16", "max_steps_per_epoch=4", "embedding_dim=32", "lr=3e-3",
            "flip=false", "domain_label=plate"]
    assert main(["train", "--data", str(shards), "--out", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch=")]
    assert len(printed) == 1 and printed[0].startswith("epoch=1/1 train_loss=")
    cfg = TrainConfig.from_yaml(out / "config.yaml")
    assert (cfg.lr, cfg.flip, cfg.domain_label, cfg.embedding_dim) == (3e-3, False, "plate", 32)
    # default split: one held-out validation and one test experiment per cell type (4 each)
    frame = pq.read_table(out / run_files.EMBEDDINGS_FILE).to_pandas()
    per_split = frame.groupby("split")["experiment"].nunique().to_dict()
    assert per_split == {"heldout_test": 4, "heldout_val": 4}
    assert frame.groupby("split")["cell_type"].nunique().to_dict() == {"heldout_test": 4, "heldout_val": 4}


@pytest.mark.parametrize("argv, message", [
    (["--set", "lr=fast"], "lr must be a number"),
    (["--set", "lr"], "--set expects KEY=VALUE, got 'lr'"),
    (["--set", "val_experiments=[HUVEC-01"], "--set val_experiments: '[HUVEC-01' is not a YAML value"),
    (["--config", "missing.yaml"], "missing.yaml"),
])
def test_cli_train_bad_input_is_one_line_and_exit_2(shards, tmp_path, capsys, argv, message):
    from rxsweep.cli import main

    assert main(["train", "--data", str(shards), "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rxsweep train: error: ") and message in err and "Traceback" not in err


# ------------------------------------------------------------- what the losses and scores see

def test_the_domain_loss_sees_the_batch_and_not_the_label(shards):
    """Label-hidden experiments stay out of training; with domain_sites: controls each domain's
    class histogram is identical (the domain cannot tell the label); the domain id fed to the
    head is the site's experiment (or experiment/plate) index, site by site, from the real stream."""
    import pandas as pd

    from rxsweep.data.stream import split_dataset
    from rxsweep.training.plan import preflight
    from rxsweep.training.recipe import domain_rows

    for domain_label, key in (("experiment", "experiment_id"), ("plate", "plate_id")):
        cfg = TrainConfig.from_dict({**SPLIT, "domain_label": domain_label, "domain_sites": "controls"})
        plan = preflight(cfg, shards)
        table = plan.index.table
        hidden = table.groupby("experiment")["label"].min().lt(0)
        assert hidden.sum() >= 4  # the tiny Kaggle layout hides the treatments of 8 experiments
        assert (table.loc[table["experiment"].isin(hidden.index[hidden]), "split"] == "unlabeled").all()
        assert not table.loc[table["split"] == "train", "experiment"].isin(hidden.index[hidden]).any()
        lut = torch.tensor(plan.domain_lut)
        seen, every = [], []
        for batch in split_dataset(plan.index, "train").iter_torch_batches(batch_size=64):
            rows = table.iloc[batch["site_index"].numpy()]
            names = rows["experiment"] if domain_label == "experiment" else rows["experiment"] + "/" + rows["plate"].astype(str)
            domains = lut[batch[key]]
            assert domains.tolist() == [plan.domain_names.index(n) for n in names]
            assert batch["is_treatment"].tolist() == rows["well_type"].eq("treatment").astype(int).tolist()
            mask = domain_rows(cfg, batch["is_treatment"])
            seen += zip(domains[mask].tolist(), batch["label"][mask].tolist())
            every += zip(domains.tolist(), batch["label"].tolist())
        hist = pd.DataFrame(seen, columns=["domain", "label"]).value_counts().unstack(fill_value=0)
        assert len(hist) == plan.n_domains and len(hist.columns) == 4  # 3 positive controls + untreated
        assert (hist.nunique(axis=0) == 1).all(), hist  # the same classes, in the same numbers
        confounded = pd.DataFrame(every, columns=["domain", "label"]).value_counts().unstack(fill_value=0)
        if domain_label == "plate":  # with every site, a plate's treatments give its siRNA group away
            assert (confounded.nunique(axis=0) > 1).any()


def test_accuracy_is_scored_on_treatment_wells(dann_run):
    """heldout_*_acc is the RxRx1 competition's accuracy (treatment wells); the all-sites figure
    keeps its own name; both recomputed by hand from the held-out embeddings."""
    out, _ = dann_run
    last = history(out)[-1]
    frame = pq.read_table(out / run_files.EMBEDDINGS_FILE).to_pandas()
    for split in ("heldout_val", "heldout_test"):
        rows = frame[frame["split"] == split]
        treat = rows[rows["well_type"] == "treatment"]
        assert 0 < len(treat) < len(rows)
        assert last[f"{split}_acc"] == pytest.approx((treat["prediction"] == treat["label"]).mean())
        assert last[f"{split}_acc_all"] == pytest.approx((rows["prediction"] == rows["label"]).mean())
        controls = rows[rows["well_type"] != "treatment"]
        assert last[f"{split}_acc_controls"] == pytest.approx((controls["prediction"] == controls["label"]).mean())


def test_class_weights_balance_controls_and_treatments(shards):
    from rxsweep.training.plan import preflight

    plan = preflight(TrainConfig.from_dict(SPLIT), shards)
    train = plan.index.table[plan.index.table["split"] == "train"]
    weights = np.array(plan.class_weights())
    counts = train["label"].value_counts()
    # every class present weighs the same in total, and a site weighs 1 on average
    totals = {label: weights[label] * n for label, n in counts.items()}
    assert np.allclose(list(totals.values()), len(train) / len(counts))
    assert np.average(weights[train["label"]]) == pytest.approx(1.0)
    control = train.loc[train["well_type"] == "positive_control", "label"].iloc[0]
    treatment = train.loc[train["well_type"] == "treatment", "label"].iloc[0]
    assert counts[control] > 2 * counts[treatment] and weights[treatment] > 2 * weights[control]


def test_erm_with_the_default_settings_learns_the_treatments(shards, tmp_path):
    """The embedded default's budget and settings (search_spaces/default.yaml, ERM, lr 3e-3)
    learn the treatments of experiments the model never saw: at least 3x chance on treatment
    wells (20 treatment siRNAs: chance 0.05), not only the easy controls."""
    from rxsweep.tuning.space_yaml import load_space

    space = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "default.yaml")
    cfg = space.trial_config({"domain_label": "none", "lr": 3e-3})
    final = train(shards, tmp_path / "erm", overrides=cfg.to_dict(), echo=False)
    index = run_files.read_splits(tmp_path / "erm")
    treatments = index.loc[(index["split"] == "heldout_test") & (index["well_type"] == "treatment"), "label"]
    chance = 1 / treatments.nunique()
    print(f"ERM, default settings: held-out treatment accuracy {final['heldout_val_acc']:.3f} (validation), "
          f"{final['heldout_test_acc']:.3f} (test); chance {chance:.3f}")
    assert final["heldout_val_acc"] >= 3 * chance and final["heldout_test_acc"] >= 3 * chance


# --------------------------------------------------------------------------- adaptive resampling

AR = {**TINY, "epochs": 3, "resampling": "adaptive", "ar_bins": 20}


@pytest.fixture(scope="module")
def ar_run(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ar"
    train(shards, out, overrides=AR, echo=False)
    return out


def test_workers_parts_of_the_training_split_are_disjoint_whole_and_streamed(shards, ray_session):
    from rxsweep.data.stream import split_dataset
    from rxsweep.training.plan import preflight

    plan = preflight(TrainConfig.from_dict(SPLIT), shards)
    train_rows = plan.index.table.index[plan.index.table["split"] == "train"].to_numpy()
    assert np.array_equal(plan.train_sites(), np.sort(train_rows))
    for world in (2, 3):
        parts = [plan.train_sites(r, world) for r in range(world)]
        together = np.concatenate(parts)
        assert len(together) == len(set(together)) and set(together) == set(train_rows)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        assert all(np.array_equal(p, plan.train_sites(r, world)) for r, p in enumerate(parts))  # fixed
    part = plan.train_sites(1, 2)
    streamed = np.concatenate([b["site_index"] for b in split_dataset(plan.index, "train", sites=part)
                              .iter_batches(batch_size=64, batch_format="numpy")])
    assert sorted(streamed) == sorted(part)


def test_adaptive_run_draws_by_its_weights_from_the_training_embeddings(ar_run, shards):
    """Epoch 1 is the plain warm-up; epochs 2-3 are drawn by weights computed from the training
    pass's own embeddings, and the checkpoint holds exactly the weights of the next epoch."""
    from rxsweep.training.plan import preflight
    from rxsweep.training.resampling import mix_uniform, resampling_weights, weight_summary

    rows = history(ar_run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[0]["ar_ess"] == 1.0 and rows[0]["ar_max_weight"] == 1.0  # uniform: the warm-up
    for row in rows:
        shares = [row[f"ar_share/{t}"] for t in ("HEPG2", "HUVEC", "RPE", "U2OS") if f"ar_share/{t}" in row]
        assert sum(shares) == pytest.approx(1.0) and 0 < row["ar_share/controls"] < 1
    plan = preflight(TrainConfig.from_dict(AR), shards)
    n_train = len(plan.train_sites())
    for epoch in (2, 3):
        state = ckpt.load_state(ar_run / run_files.checkpoint_dir_name(epoch))["resampling"]
        seen = state["seen"].numpy()
        # 6 steps of 16 an epoch: the memory holds the sites the epochs drew, the rest weigh the mean
        assert 0 < seen.sum() <= 16 * 6 * epoch and np.array_equal(state["sites"].numpy(), plan.train_sites())
        expected = np.full(n_train, 1 / n_train)
        expected[seen] = resampling_weights(state["memory"].numpy()[seen], 20, 1e-3) * seen.sum() / n_train
        assert np.allclose(state["weights"].numpy(), expected)
        if epoch == 2:  # epoch 3 was drawn by what epoch 2's checkpoint holds
            assert rows[2]["ar_ess"] == pytest.approx(weight_summary(mix_uniform(expected, 0.1))["ar_ess"])
            assert rows[2]["ar_max_weight"] == pytest.approx(weight_summary(mix_uniform(expected, 0.1))["ar_max_weight"])
    assert rows[1]["ar_ess"] < 1 and rows[1]["ar_max_weight"] > 1


def test_killed_adaptive_run_redraws_its_epochs_exactly(ar_run, shards, tmp_path, ray_session):
    """The AR weights and embedding memory travel in the checkpoint: a run killed after epoch 1
    draws epochs 2 and 3 as the uninterrupted run did, so every metric repeats."""
    out = tmp_path / "ar-killed"
    _kill_after_first_checkpoint(shards, out, AR, ray_session)
    train(shards, out, overrides=AR, echo=False)
    assert [untimed(r) for r in history(out)] == [untimed(r) for r in history(ar_run)]


def test_precomputed_weights_are_checked_and_drawn_by(shards, tmp_path):
    """ar_weights_from: a weight a site (here all on HUVEC) draws only HUVEC sites with ar_mix 0;
    unknown site ids are refused by name before any worker; an embedding column gives AR weights."""
    import pandas as pd

    from rxsweep.training.plan import preflight
    from rxsweep.training.resampling import resampling_weights

    index = open_shards(shards)
    sites = index.table[["site_id", "cell_type"]]
    weights = tmp_path / "weights.parquet"
    pd.DataFrame({"site_id": sites["site_id"], "weight": (sites["cell_type"] == "HUVEC").astype(float)}) \
        .to_parquet(weights)
    overrides = {**TINY, "epochs": 1, "resampling": "adaptive", "ar_mix": 0.0, "ar_weights_from": str(weights)}
    train(shards, tmp_path / "run", overrides=overrides, echo=False)
    row = history(tmp_path / "run")[0]
    assert row["ar_share/HUVEC"] == 1.0 and row["ar_ess"] < 1

    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"site_id": ["HUVEC-99_1_B02_1", *sites["site_id"]], "weight": 1.0}).to_parquet(bad)
    with pytest.raises(ConfigError, match=r"lists site ids that are in no shard: \['HUVEC-99_1_B02_1'\]"):
        train(shards, tmp_path / "bad-run", overrides={**overrides, "ar_weights_from": str(bad)}, echo=False)
    assert not (tmp_path / "bad-run").exists()

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(sites), 8))
    embedded = tmp_path / "embedded.parquet"
    pd.DataFrame({"site_id": sites["site_id"], "embedding": list(vectors)}).to_parquet(embedded)
    plan = preflight(TrainConfig.from_dict({**overrides, "ar_weights_from": str(embedded)}), shards)
    assert np.allclose(plan.ar_weights, resampling_weights(vectors[plan.train_sites()], 100, 1e-3))
    with pytest.raises(ConfigError, match="ar_weights_from='x.parquet' needs resampling: adaptive"):
        TrainConfig.from_dict({"ar_weights_from": "x.parquet"})


@pytest.mark.parametrize("adversary", ["dann", "cdann"])
def test_a_batch_without_controls_still_reaches_every_domain_parameter(adversary):
    """With domain_sites: controls, a batch holding no control well adds a domain loss of 0, and
    every domain-head parameter still gets a (zero) gradient: DDP without find_unused_parameters
    needs every parameter on every rank (tests/test_ddp_losses.py runs two ranks)."""
    from rxsweep.models import DISCRIMINATOR_PREFIXES

    cfg, model, optimizer, scheduler = _controls_only_dann(adversary)
    labels = torch.tensor([0, 1, 2, 3])  # treatments only
    out = train_step(model, optimizer, scheduler, torch.randn(4, 6, 16, 16), labels, torch.tensor([0, 1, 2, 0]),
                     cfg, torch.device("cpu"), is_treatment=torch.ones(4, dtype=torch.long))
    assert out.domain_loss.item() == 0.0 and out.domain_seen.item() == 0 and out.domain_correct.item() == 0
    domain_params = [(n, p) for n, p in model.named_parameters() if n.startswith(DISCRIMINATOR_PREFIXES)]
    assert domain_params and all(p.grad is not None for _, p in domain_params)
    assert all(float(p.grad.abs().max()) == 0.0 for _, p in domain_params)
