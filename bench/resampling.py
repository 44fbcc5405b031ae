"""Benchmark of adaptive-resampling (AR) weights on full RxRx1's training sites, one JSON line.

    python bench/resampling.py [--n 81224] [--dims 128] [--bins 100] [--smoothing 0.001]
                               [--preset tiny] [--batch-size 32] [--repeats 3]

Part 1, weights (``weights_figures``): ``resampling_weights`` on n = 81,224 x 128 float32
embeddings (the size of RxRx1's training sites), seeded synthetic data with structure: a Gaussian
mixture of 50 centres with Zipf-like (imbalanced) shares, each dimension scaled differently.
Baseline, run in the same process on the same data: the published ``calculate_resampling_weights``
(copied below, unchanged but for names), one np.histogram + np.digitize per dimension. Both are
timed best of 3. ``speedup`` = loop_s / weights_s (> 1: ours is faster); ``max_abs_diff`` and
``max_rel_diff`` compare the two weight vectors (they should agree to rounding). Target: weights
in under 1 s on this machine.

Part 2, the training stream (``stream_figures``): sites/s of one epoch of a run's training stream
(the datasets `rxsweep train` builds: materialised, shuffled, preserve_order) as torch batches,
drawn by AR weights (rxsweep.training.resampler: a multinomial draw, each site repeated in a
shuffle pool) against the plain stream (Ray Data's iter_torch_batches with its local shuffle
buffer of the same size), alternated, best of ``--repeats`` each. ``stream_ratio`` = AR / plain
(target >= 0.9). The data: a synthetic preset (``--preset``, cached under bench/.cache; tiny is
6 x 64 x 64, where per-row costs weigh most; small is RxRx1's 512 x 512).

Absolute times drift on this shared machine; the ratio against the baseline run alongside holds.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from rxsweep.training.resampling import resampling_weights, weight_summary

WEIGHTS_TARGET_S = 1.0


# ---- BASELINE: the published formulation, as released with the AR paper (loop over dimensions)
def calculate_resampling_weights(z, num_bins=100, smoothing_fac=0.001):
    sample_weights = np.zeros(z.shape[0])
    for i in range(z.shape[1]):
        hist_density, bin_edges = np.histogram(z[:, i], density=True, bins=num_bins)
        bin_edges[0] = float("-inf")
        bin_edges[-1] = float("inf")
        bin_idx = np.digitize(z[:, i], bin_edges)
        hist_smoothed_density = hist_density + smoothing_fac
        hist_smoothed_density = hist_smoothed_density / np.sum(hist_smoothed_density)
        p = 1.0 / (hist_smoothed_density[bin_idx - 1])
        p = p / np.sum(p)
        sample_weights = np.maximum(sample_weights, p)
    return sample_weights / np.sum(sample_weights)
# ---- end of baseline


def make_embeddings(n: int, dims: int, seed: int) -> np.ndarray:
    """(n, dims) float32: 50-centre Gaussian mixture, imbalanced shares (1/rank), scaled dims."""
    rng = np.random.default_rng(seed)
    shares = 1.0 / np.arange(1, 51)
    labels = rng.choice(50, size=n, p=shares / shares.sum())
    centres = rng.normal(size=(50, dims)) * 2.0
    scale = rng.uniform(0.5, 2.0, size=dims)
    z = (centres[labels] + rng.normal(size=(n, dims))) * scale
    return z.astype(np.float32)


def best_of(fn, repeats: int = 3) -> tuple[float, np.ndarray]:
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def weights_figures(n: int, dims: int, bins: int, smoothing: float, seed: int) -> dict:
    """Part 1: resampling_weights against the published per-dimension loop, same data."""
    z = make_embeddings(n, dims, seed)
    weights_s, ours = best_of(lambda: resampling_weights(z, bins, smoothing))
    loop_s, ref = best_of(lambda: calculate_resampling_weights(z, bins, smoothing))
    summary = weight_summary(ours)
    return {
        "n_sites": n,
        "dims": dims,
        "bins": bins,
        "smoothing": smoothing,
        "weights_s": round(weights_s, 4),
        "loop_s": round(loop_s, 4),
        "speedup": round(loop_s / weights_s, 2),
        "weights_target_s": WEIGHTS_TARGET_S,
        "weights_target_met": bool(weights_s < WEIGHTS_TARGET_S),
        "max_abs_diff": float(np.abs(ours - ref).max()),
        "max_rel_diff": float(np.abs(ours / ref - 1.0).max()),
        "ar_ess": round(summary["ar_ess"], 4),
        "ar_max_weight": round(summary["ar_max_weight"], 2),
    }


STREAM_TARGET_RATIO = 0.9
CACHE = Path(__file__).parent / ".cache"


def stream_figures(preset: str, batch_size: int, repeats: int) -> dict:
    """Part 2: one epoch of the training stream drawn by AR weights against the plain stream."""
    import ray
    from ray.data import DataContext

    from rxsweep.data.prepare import prepare_synthetic
    from rxsweep.training.config import TrainConfig
    from rxsweep.training.plan import TRAIN_SPLIT, preflight
    from rxsweep.training.resampler import AdaptiveResampler
    from rxsweep.training.trainer import build_datasets

    if not ray.is_initialized():  # an ingest (prepare_synthetic's first call) starts one
        ray.init(num_cpus=3, log_to_driver=False, include_dashboard=False)
    shards = prepare_synthetic(CACHE, preset=preset, progress=False)
    DataContext.get_current().enable_progress_bars = False
    cfg = TrainConfig.from_dict({"batch_size": batch_size, "resampling": "adaptive"})
    plan = preflight(cfg, shards)
    data = build_datasets(cfg, plan)[0][TRAIN_SPLIT]
    sampler = AdaptiveResampler(cfg, plan, rank=0, world=1)
    rng = np.random.default_rng(0)
    sampler.weights = resampling_weights(rng.normal(size=(len(sampler.sites), 128)), cfg.ar_bins, cfg.ar_smoothing)

    def plain() -> int:
        return sum(len(b["label"]) for b in data.iter_torch_batches(
            batch_size=batch_size, drop_last=True, prefetch_batches=2,
            local_shuffle_buffer_size=cfg.shuffle_buffer, local_shuffle_seed=1))

    def adaptive() -> int:
        return sum(len(b["label"]) for b in sampler.batches(data, batch_size, cfg.shuffle_buffer,
                                                             np.random.default_rng(1)))

    rates: dict[str, list[float]] = {"plain": [], "adaptive": []}
    plain(), adaptive()  # warm-up: first reads, imports
    for _ in range(repeats):
        for name, fn in (("plain", plain), ("adaptive", adaptive)):
            t = time.perf_counter()
            sites = fn()
            rates[name].append(sites / (time.perf_counter() - t))
    ray.shutdown()
    best = {k: max(v) for k, v in rates.items()}
    return {"stream_preset": preset, "stream_image_shape": list(plan.index.image_shape),
            "stream_train_sites": len(sampler.sites), "stream_batch_size": batch_size,
            "plain_sites_per_s": round(best["plain"], 1), "ar_sites_per_s": round(best["adaptive"], 1),
            "stream_ratio": round(best["adaptive"] / best["plain"], 3), "stream_target_ratio": STREAM_TARGET_RATIO,
            "stream_target_met": bool(best["adaptive"] / best["plain"] >= STREAM_TARGET_RATIO)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=81_224)
    ap.add_argument("--dims", type=int, default=128)
    ap.add_argument("--bins", type=int, default=100)
    ap.add_argument("--smoothing", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="tiny", help="synthetic preset of the stream part (tiny | small)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = {"bench": "resampling"}
    out.update(weights_figures(args.n, args.dims, args.bins, args.smoothing, args.seed))
    out.update(stream_figures(args.preset, args.batch_size, args.repeats))
    out["machine"] = platform.machine()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
