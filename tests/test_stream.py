"""Stream: splits by experiment, datasets per split, device-side normalisation and augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rxrx1_files import write_kaggle
from rxsweep.data.image_column import to_numpy
from rxsweep.data.ingest import ingest
from rxsweep.data.shard_source import read_shard
from rxsweep.data.splits import SplitSpec, assign_splits
from rxsweep.data.stream import batch_transform, open_shards, split_dataset, with_splits
from rxsweep.data.transforms import AugmentSpec, BatchTransform

TRAIN = ["HEPG2-01", "HEPG2-02", "HEPG2-03", "HUVEC-01", "HUVEC-02", "HUVEC-03", "HUVEC-04"]


@pytest.fixture(scope="module")
def shards(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream")
    root = write_kaggle(tmp / "kaggle", TRAIN, test_experiments=("U2OS-04",))
    ingest(root, tmp / "shards", max_sites_per_shard=4, progress=False)
    return tmp / "shards"


def _split(shards, **spec):
    return with_splits(open_shards(shards), SplitSpec(**spec))


def test_held_out_experiments_never_train_and_wells_stay_whole(shards):
    index = _split(shards, holdout_fraction=0.3, seed=3)
    table = index.table
    by_experiment = table.groupby("experiment")["split"].agg(set)
    held = [e for e, s in by_experiment.items() if s & {"heldout_val", "heldout_test"}]
    assert all(len(by_experiment[e]) == 1 for e in held)  # an experiment is held out whole
    assert sorted(table.loc[table.split == "heldout_val", "cell_type"].unique()) == ["HEPG2", "HUVEC"]
    assert (table.loc[table.split == "unlabeled", "experiment"] == "U2OS-04").all()
    assert table.groupby("well_id")["split"].nunique().max() == 1  # both sites of a well together
    assert 0 < (table.split == "val").sum() < (table.split == "train").sum()


def test_drawn_splits_are_seeded(shards):
    index = open_shards(shards)
    first = assign_splits(index.table, SplitSpec(seed=1))
    assert first.equals(assign_splits(index.table, SplitSpec(seed=1)))
    draws = {tuple(sorted(index.table.experiment[assign_splits(index.table, SplitSpec(seed=s)) == "heldout_test"].unique()))
             for s in range(8)}
    assert len(draws) > 1


@pytest.mark.parametrize("spec, message", [
    ({"val_experiments": ("HEPG2-09",)}, r"val_experiments \['HEPG2-09'\] are not in the data; known: \["),
    ({"val_experiments": ("U2OS-04",)}, r"have no labels \(Kaggle test set\)"),
    ({"val_experiments": ("HUVEC-01",), "test_experiments": ("HUVEC-01",)}, r"in both val_experiments and test_experiments"),
    ({"n_val_per_cell_type": 2}, r"cell type HEPG2 has 3 labelled experiment\(s\) left: holding out 2 for val and 1 for test would leave none"),
    ({"holdout_fraction": 1.0}, r"holdout_fraction must be in \[0, 1\)"),
])
def test_bad_split_settings_say_what_to_change(shards, spec, message):
    with pytest.raises(ValueError, match=message):
        _split(shards, **spec)


def test_each_split_streams_exactly_its_sites(shards):
    index = _split(shards, val_experiments=("HUVEC-02",), test_experiments=("HEPG2-03",), holdout_fraction=0.2)
    for split in ("train", "val", "heldout_val", "heldout_test"):
        batches = list(split_dataset(index, split).iter_torch_batches(batch_size=16))
        site_index = torch.cat([b["site_index"] for b in batches]).numpy()
        expected = index.table.index[index.table.split == split]
        assert sorted(site_index) == sorted(expected)
        first = batches[0]
        assert first["image"].dtype == torch.uint8 and first["image"].shape[1:] == (6, 16, 16)
        rows = index.table.loc[first["site_index"].numpy()]
        assert (rows["label"].to_numpy() == first["label"].numpy()).all()
        assert [index.experiments[i] for i in first["experiment_id"]] == list(rows["experiment"])
        assert [index.plates[i] for i in first["plate_id"]] == list(zip(rows["experiment"], rows["plate"]))
        assert torch.equal(first["image"], torch.from_numpy(_pixels_of(index, rows)))


def _pixels_of(index, rows) -> np.ndarray:
    """The sites' pixels read straight from their shards with pyarrow."""
    out = []
    for shard, row in zip(rows["shard"], rows["row"]):
        table = pq.read_table(Path(index.root) / shard, columns=["image"])
        out.append(to_numpy(table["image"].slice(row, 1), index.image_shape))
    return np.concatenate(out)


def test_shard_reader_decodes_only_wanted_row_groups_and_keeps_row_order(tmp_path):
    path = tmp_path / "shard.parquet"
    pq.write_table(pa.table({"site_id": [f"s{i}" for i in range(10)], "v": list(range(10))}), path,
                   row_group_size=3)  # row groups [0-2] [3-5] [6-8] [9]
    rows = np.array([1, 2, 7, 9])
    blocks = list(read_shard(str(path), rows, {"key": rows * 10}, ["site_id", "v"],
                              lambda table, values: table.append_column("key", pa.array(values["key"]))))
    assert [b.num_rows for b in blocks] == [2, 1, 1]  # groups 0, 2 and 3; group 1 never read
    assert pa.concat_tables(blocks).to_pydict() == {"site_id": ["s1", "s2", "s7", "s9"], "v": [1, 2, 7, 9],
                                                    "key": [10, 20, 70, 90]}


def test_a_shard_changed_after_opening_is_an_error_not_wrong_labels(shards):
    index = _split(shards, val_experiments=("HUVEC-02",), test_experiments=("HEPG2-03",))
    index.table["site_id"] = index.table["site_id"].sample(frac=1.0, random_state=0).to_numpy()  # stale index
    with pytest.raises(Exception, match="a shard no longer holds the sites its folder's index lists"):
        split_dataset(index, "heldout_val").materialize()


def _plate_batch(index, experiment="HUVEC-03", plate=1):
    chosen = index.table[(index.table.experiment == experiment) & (index.table.plate == plate)]
    dataset = split_dataset(index, "train")
    batch = next(iter(dataset.iter_torch_batches(batch_size=10_000)))
    keep = torch.from_numpy(np.isin(batch["site_index"].numpy(), chosen.index.to_numpy()))
    return {k: v[keep] for k, v in batch.items()}


def test_plate_normalisation_centres_each_plate_and_channel(shards):
    index = _split(shards, val_experiments=("HUVEC-02",), test_experiments=("HEPG2-03",), holdout_fraction=0.0)
    batch = _plate_batch(index)
    x = batch_transform(index, "plate", AugmentSpec(rotate90=False, flip=False))(
        batch["image"], batch["experiment_id"], batch["plate_id"], train=False)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(6), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(6), atol=1e-3)
    image = batch_transform(index, "image")(batch["image"], batch["experiment_id"], batch["plate_id"], train=False)
    assert torch.allclose(image.mean(dim=(2, 3)), torch.zeros(1), atol=1e-4)
    none = batch_transform(index, "none")(batch["image"], batch["experiment_id"], batch["plate_id"], train=False)
    assert torch.allclose(none, batch["image"].float() / 255, rtol=0, atol=1e-7)


def test_plate_controls_needs_controls_and_unknown_names_list_the_known(shards):
    index = open_shards(shards)
    with pytest.raises(ValueError, match=r"no plate statistics \(controls\) .* use 'plate'"):
        batch_transform(index, "plate_controls")
    with pytest.raises(ValueError, match=r"unknown normalization 'zscore'; known: \['none', 'image', 'plate', 'experiment', 'plate_controls'\]"):
        batch_transform(index, "zscore")


def test_plate_controls_uses_control_well_statistics():
    stats = pd.DataFrame([
        {"level": "plate", "experiment": "E-01", "plate": 1, "subset": s, "channel": 0, "mean": m, "std": sd}
        for s, m, sd in (("all", 100.0, 10.0), ("controls", 50.0, 5.0))])
    transform = BatchTransform("plate_controls", stats, ["E-01"], [("E-01", 1)], AugmentSpec(False, False))
    x = transform(torch.full((1, 1, 2, 2), 60, dtype=torch.uint8), torch.zeros(1, dtype=torch.long),
                  torch.zeros(1, dtype=torch.long), train=True)
    assert torch.allclose(x, torch.full_like(x, 2.0))


def test_augmentation_keeps_pixels_and_crops_on_device():
    images = torch.randint(0, 255, (64, 3, 12, 12), dtype=torch.uint8)
    ids = torch.zeros(64, dtype=torch.long)
    transform = BatchTransform("none", None, [], [], AugmentSpec(crop=8, intensity_jitter=0.0), seed=0)
    train = transform(images, ids, ids, train=True)
    assert train.shape == (64, 3, 8, 8)
    evaluation = transform(images, ids, ids, train=False)
    assert torch.allclose(evaluation, images[:, :, 2:10, 2:10].float() / 255, rtol=0, atol=1e-7)
    dihedral = BatchTransform("none", None, [], [], AugmentSpec(), seed=0)(images, ids, ids, train=True)
    assert torch.allclose(dihedral.flatten(1).sort(dim=1).values, (images.float() / 255).flatten(1).sort(dim=1).values,
                          rtol=0, atol=1e-7)
    assert not torch.equal(dihedral, images.float() / 255)
    again = BatchTransform("none", None, [], [], AugmentSpec(), seed=0)(images, ids, ids, train=True)
    assert torch.equal(dihedral, again)  # seeded
    jitter = BatchTransform("none", None, [], [], AugmentSpec(False, False, None, 0.2), seed=0)(images, ids, ids, train=True)
    ratio = jitter.std(dim=(2, 3)) / (images.float() / 255).std(dim=(2, 3))
    assert 0.79 < ratio.min() < ratio.max() < 1.21 and ratio.std() > 0.01


def test_weighted_batches_stream_exactly_the_drawn_multiset_seeded(shards):
    """Adaptive resampling's epoch: each site of the real stream emitted as often as it was drawn,
    images intact, in an order the generator fixes; a partial last batch dropped."""
    from rxsweep.data.weighted_batches import weighted_batches

    index = _split(shards, val_experiments=("HUVEC-02",), test_experiments=("HEPG2-03",))
    dataset = split_dataset(index, "train").materialize()
    images = {int(i): img for b in dataset.iter_batches(batch_size=32, batch_format="numpy")
              for i, img in zip(b["site_index"], b["image"])}
    sites = np.array(sorted(images))
    p = np.linspace(1, 10, len(sites))
    p /= p.sum()

    def epoch(seed: int, buffer_rows: int = 24):
        rng = np.random.default_rng(seed)
        counts = np.zeros(len(index.table), dtype=np.int64)
        counts[sites] = rng.multinomial(len(sites), p)
        stream = dataset.iter_batches(batch_size=7, batch_format="numpy")
        return counts, list(weighted_batches(stream, counts, 8, buffer_rows, rng))

    counts, batches = epoch(1)
    emitted = np.concatenate([b["site_index"] for b in batches])
    assert all(len(b["site_index"]) == 8 for b in batches) and len(emitted) == len(sites) // 8 * 8
    got = np.bincount(emitted, minlength=len(counts))
    assert (got <= counts).all() and counts.sum() - got.sum() < 8  # all but the dropped remainder
    assert counts[sites].max() > 1 and (counts[sites] == 0).any()  # with replacement
    for b in batches:
        assert all(np.array_equal(img, images[int(i)]) for i, img in zip(b["site_index"], b["image"]))
    again = epoch(1)[1]
    assert all(np.array_equal(a["site_index"], b["site_index"]) for a, b in zip(batches, again))
    assert not np.array_equal(emitted, np.concatenate([b["site_index"] for b in epoch(2)[1]]))
    # heavier sites are drawn more: the top third of p against the bottom third
    third = len(sites) // 3
    assert counts[sites[-third:]].sum() > 2 * counts[sites[:third]].sum()
    # no buffer: the sites leave in the stream's order, each repeated in place
    plain_counts, plain = epoch(1, buffer_rows=0)
    order = np.concatenate([b["site_index"] for b in plain])
    stream = np.concatenate([b["site_index"] for b in dataset.iter_batches(batch_size=7, batch_format="numpy")])
    assert np.array_equal(order, np.repeat(stream, plain_counts[stream])[:len(order)])
