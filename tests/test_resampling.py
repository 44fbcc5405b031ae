"""rxsweep.training.resampling against the published per-dimension loop (written out below), known
answers and argument validation. NumPy only, no Ray, no torch; about a second.

Tolerance: 1e-12 relative against the loop (float64 weights; what differs is summation order).
"""

from __future__ import annotations

import numpy as np
import pytest

from rxsweep.training.resampling import mix_uniform, resampling_weights, weight_summary

RTOL = 1e-12


def ref_weights(z, num_bins=100, smoothing_fac=0.001):
    """calculate_resampling_weights as published (AR paper, after Amini et al. 2019's DB-VAE)."""
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


def assert_matches_ref(z, bins=100, smoothing=0.001):
    before = np.array(z, copy=True)
    got = resampling_weights(z, bins=bins, smoothing=smoothing)
    np.testing.assert_array_equal(z, before)  # input untouched
    want = ref_weights(z, bins, smoothing)
    assert got.shape == (z.shape[0],) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)
    assert abs(got.sum() - 1.0) < 1e-12 and (got > 0).all()
    return got


# ----------------------------------------------------------------------------- against the loop


@pytest.mark.parametrize("bins,smoothing", [(100, 0.001), (1, 0.001), (7, 0.0), (37, 0.5), (1000, 1e-6)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gaussian_matches_loop(bins, smoothing, dtype):
    rng = np.random.default_rng(bins)
    z = (rng.normal(size=(2000, 12)) * rng.uniform(0.1, 5, 12) + rng.normal(size=12)).astype(dtype)
    assert_matches_ref(z, bins, smoothing)


@pytest.mark.parametrize("bins", [9, 18, 100])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_integer_values_ties_at_edges(bins, dtype):
    # Values 0..9 with 9 or 18 bins: every value but 0 and 9 sits exactly on an inner edge,
    # which np.digitize puts in the bin to its right; 9 is in the last (closed) bin.
    rng = np.random.default_rng(1)
    z = rng.integers(0, 10, size=(600, 6)).astype(dtype)
    assert_matches_ref(z, bins)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_exactly_on_computed_edges(dtype):
    # Put values exactly on each dimension's own (non-round) np.histogram edges.
    rng = np.random.default_rng(2)
    z = rng.normal(size=(3000, 8)).astype(dtype)
    for d in range(z.shape[1]):
        _, edges = np.histogram(z[:, d], bins=50)
        rows = rng.choice(z.shape[0], 400, replace=False)
        rows = rows[(z[rows, d] != z[:, d].min()) & (z[rows, d] != z[:, d].max())]  # keep [min, max]
        z[rows, d] = edges[rng.integers(1, 50, rows.size)]
    assert_matches_ref(z, 50)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_constant_dimensions(dtype):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(500, 5)).astype(dtype)
    z[:, 1] = 3.7
    z[:, 4] = -1e-3
    assert_matches_ref(z, 100)
    assert_matches_ref(z, 7)  # odd bin count: the constant sits mid-bin, not on an edge
    np.testing.assert_allclose(resampling_weights(np.full((9, 3), 2.0, dtype)), np.full(9, 1 / 9), rtol=RTOL)


def test_one_site_and_tiny_inputs():
    np.testing.assert_array_equal(resampling_weights(np.array([[0.3, -2.0]])), [1.0])
    assert_matches_ref(np.array([[0.3, -2.0]]), 100)
    assert_matches_ref(np.array([[0.0], [1.0]]), 1)
    assert_matches_ref(np.array([[0.0], [1.0], [1.0]]), 3, 0.0)


def test_too_many_bins_refused_like_numpy():
    z = np.full((5, 2), 1e8, np.float32)  # x +- 0.5 rounds back to x in float32: no bin width
    with pytest.raises(ValueError, match="Too many bins"):
        np.histogram(z[:, 0], bins=100)
    with pytest.raises(ValueError, match="bins=100 is too many .* dimension 0"):
        resampling_weights(z)


# ----------------------------------------------------------------------------- known answers


def test_two_values_by_hand():
    # 1-D: a sites at 0, b at 1, B bins. Widths 1/B, so densities are a*B/N in the first bin,
    # b*B/N in the last, 0 elsewhere; + eps, then the common normaliser cancels in the ratio:
    #   w_b / w_a = (a*B/N + eps) / (b*B/N + eps),  a * w_a + b * w_b = 1.
    a, b, B, eps = 495, 5, 100, 0.001
    n = a + b
    z = np.r_[np.zeros(a), np.ones(b)][:, None]
    w = resampling_weights(z, B, eps)
    ratio = (a * B / n + eps) / (b * B / n + eps)  # 99.001 / 1.001 = 98.902...
    w_a = 1.0 / (a + b * ratio)
    np.testing.assert_allclose(w[:a], w_a, rtol=RTOL)
    np.testing.assert_allclose(w[a:], w_a * ratio, rtol=RTOL)


def test_outliers_get_the_largest_weights():
    # 500 sites N(0, 0.1) in 8 dims and 5 outliers at 10, 20, .., 50 in every dim. Per dim the
    # range is ~50.3, so bins are ~0.503 wide: the cluster fills the first bin (a site spills into
    # the second only above min + 0.503 ~ 0.2, p ~ 2%) and each outlier is alone in its bin.
    # Per dim, weight ~ 1 / (count / (N * width) + eps), so an outlier (count 1) over a site in the
    # full bin (count c >= ~470) is (c + eps*N*width) / (1 + eps*N*width) ~ 470.25 / 1.254 ~ 375.
    # The median cluster site is in the full bin in all 8 dims (~0.98^8 ~ 85% of them are), so
    # each outlier should weigh ~375x the median cluster site: assert > 100x (well above 10x).
    rng = np.random.default_rng(4)
    cluster = rng.normal(0.0, 0.1, size=(500, 8))
    outliers = np.repeat(np.arange(10.0, 51.0, 10.0)[:, None], 8, axis=1)
    z = np.vstack([cluster, outliers])
    w = assert_matches_ref(z)
    assert set(np.argsort(w)[-5:]) == set(range(500, 505))
    assert w[500:].min() > 100 * np.median(w[:500])


def test_equal_counts_give_uniform_weights():
    # m values in each of B unit cells, at k + (j + 0.5) / m: min 0.5/m, max B - 0.5/m, so the
    # inner edge k is k + (0.5 - k/B) / m, strictly between cells k-1 and k: m sites a bin.
    B, m, D = 10, 7, 4
    rng = np.random.default_rng(5)
    col = (np.arange(B)[:, None] + (np.arange(m) + 0.5) / m).ravel()
    z = np.stack([rng.permutation(col) for _ in range(D)], axis=1)
    assert (np.histogram(z[:, 0], bins=B)[0] == m).all()
    w = assert_matches_ref(z, B)
    np.testing.assert_allclose(w, 1.0 / (B * m), rtol=1e-13)


def test_iid_uniform_is_near_uniform():
    z = np.random.default_rng(6).uniform(size=(20_000, 16))
    s = weight_summary(resampling_weights(z))
    assert s["ar_ess"] > 0.95  # ~0.995: 200 +- 14 sites a bin, max over 16 dims
    assert s["ar_max_weight"] < 1.5


# ----------------------------------------------------------------------------- summary and mix


def test_weight_summary_by_hand():
    assert weight_summary(np.full(8, 1 / 8)) == pytest.approx({"ar_ess": 1.0, "ar_max_weight": 1.0}, rel=1e-12)
    one_hot = np.zeros(10)
    one_hot[3] = 1.0
    assert weight_summary(one_hot) == pytest.approx({"ar_ess": 0.1, "ar_max_weight": 10.0}, rel=1e-12)
    # sum w^2 = 0.25 + 2 * 0.0625 = 0.375: ess = 1 / 0.375 / 3 = 8/9; max 0.5 * 3 = 1.5
    assert weight_summary([0.5, 0.25, 0.25]) == pytest.approx({"ar_ess": 8 / 9, "ar_max_weight": 1.5}, rel=1e-12)


def test_mix_uniform():
    w = resampling_weights(np.random.default_rng(7).normal(size=(300, 4)))
    np.testing.assert_allclose(mix_uniform(w, 1.0), np.full(300, 1 / 300), rtol=1e-12)
    np.testing.assert_allclose(mix_uniform(w, 0.0), w, rtol=1e-12)
    one_hot = np.zeros(300)
    one_hot[0] = 1.0
    for mix in (0.1, 0.5):
        for base in (w, one_hot):
            m = mix_uniform(base, mix)
            assert m.min() >= mix / 300 * (1 - 1e-12)
            assert abs(m.sum() - 1.0) < 1e-12


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "z,kwargs,match",
    [
        (np.zeros(5), {}, r"^z must be a 2-D array"),
        (np.zeros((0, 3)), {}, r"^z needs at least 1 site"),
        (np.zeros((4, 0)), {}, r"^z needs at least 1 site"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), {}, r"^z contains 1 non-finite"),
        (np.array([[np.inf, np.nan], [-np.inf, 3.0]]), {}, r"^z contains 3 non-finite"),
        (np.array([["a"], ["b"]]), {}, r"^z must have a real numeric dtype"),
        (np.zeros((3, 2)), {"bins": 0}, r"^bins must be an int >= 1"),
        (np.zeros((3, 2)), {"bins": 2.5}, r"^bins must be an int >= 1"),
        (np.zeros((3, 2)), {"bins": True}, r"^bins must be an int >= 1"),
        (np.zeros((3, 2)), {"smoothing": -0.1}, r"^smoothing must be a finite number >= 0"),
        (np.zeros((3, 2)), {"smoothing": np.inf}, r"^smoothing must be a finite number >= 0"),
        (np.zeros((3, 2)), {"smoothing": np.nan}, r"^smoothing must be a finite number >= 0"),
    ],
)
def test_resampling_weights_rejects(z, kwargs, match):
    with pytest.raises(ValueError, match=match):
        resampling_weights(z, **kwargs)


@pytest.mark.parametrize(
    "weights,match",
    [
        (np.full((2, 2), 0.25), r"^weights must be a non-empty 1-D"),
        (np.array([]), r"^weights must be a non-empty 1-D"),
        (np.array([1.5, -0.5]), r"^weights must be finite and >= 0"),
        (np.array([np.nan, 1.0]), r"^weights must be finite and >= 0"),
        (np.array([0.5, 0.6]), r"^weights must sum to 1"),
    ],
)
def test_weights_rejected(weights, match):
    with pytest.raises(ValueError, match=match):
        weight_summary(weights)
    with pytest.raises(ValueError, match=match):
        mix_uniform(weights, 0.5)


@pytest.mark.parametrize("mix", [-0.1, 1.1, np.nan, True, "0.5"])
def test_mix_rejected(mix):
    with pytest.raises(ValueError, match=r"^mix must be a number in \[0, 1\]"):
        mix_uniform(np.full(4, 0.25), mix)
