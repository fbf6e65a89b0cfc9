"""Pure functions from attention signals to the quantities the figures plot (numpy in, numpy out).

Inputs are arrays of per-sample attention over N visual tokens in raster order, shaped [S, N]
(one layer) or [S, L, N] (every language-model layer).
"""

from __future__ import annotations

import numpy as np

HISTOGRAM_BINS = 200  # the paper's scripts' bin count for the "normalized attention score" histograms


def top_tokens(scores: np.ndarray, count: int) -> np.ndarray:
    """[..., count] indices of the `count` highest scores along the last axis; ties go to the earlier token."""
    count = min(int(count), scores.shape[-1])
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[..., :count]


def selection_frequency(scores: np.ndarray, count: int) -> np.ndarray:
    """[N] how often each token index is among a sample's `count` highest `scores` [S, N], divided by the
    largest such count (the paper's Fig. 2(a) bars: the most selected index reads 1)."""
    chosen = top_tokens(scores, count)
    counts = np.bincount(chosen.ravel(), minlength=scores.shape[-1]).astype(np.float64)
    return counts / max(counts.max(), 1.0)


def mean_attention(scores: np.ndarray) -> np.ndarray:
    """[N] (or [L, N]) mean attention each token index receives over the samples."""
    return scores.mean(axis=0)


def quartile_bounds(num_tokens: int, parts: int = 4) -> list[tuple[int, int]]:
    """Index ranges [start, stop) of `parts` consecutive, as equal as possible, groups of tokens."""
    edges = [k * num_tokens // parts for k in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def quartile_shares(scores: np.ndarray, top_fraction: float = 0.25, weight: str = "count") -> np.ndarray:
    """[..., 4] percentage of a sample's top `top_fraction` tokens (by `scores` [S, ..., N]) falling in
    each index quartile, averaged over samples (axis 0); each row sums to 100.

    weight "count" counts the top tokens; "mass" sums their attention instead.
    """
    if weight not in ("count", "mass"):
        raise ValueError(f"weight must be 'count' or 'mass', got {weight!r}")
    num_tokens = scores.shape[-1]
    chosen = top_tokens(scores, max(1, round(top_fraction * num_tokens)))
    values = np.ones(chosen.shape) if weight == "count" else np.take_along_axis(scores, chosen, axis=-1)
    bounds = quartile_bounds(num_tokens)
    quartile = np.searchsorted([b for _, b in bounds], chosen, side="right")
    shares = np.stack([(values * (quartile == q)).sum(-1) for q in range(len(bounds))], axis=-1)
    shares = 100.0 * shares / shares.sum(-1, keepdims=True)
    return shares.mean(axis=0)


def cumulative_distribution(scores: np.ndarray) -> np.ndarray:
    """[N] mean over samples of the sorted (largest first), sum-normalised attention, accumulated:
    entry k is the share of a sample's attention held by its k+1 most-attended tokens (ends at 1)."""
    ordered = -np.sort(-scores, axis=-1)
    shares = ordered / ordered.sum(axis=-1, keepdims=True)
    return np.cumsum(shares, axis=-1).mean(axis=0)


def share_of_top(curve: np.ndarray, fraction: float) -> float:
    """The attention share of the top `fraction` of tokens, read off a `cumulative_distribution` curve."""
    count = max(1, round(fraction * curve.shape[-1]))
    return float(curve[count - 1])


def density(scores: np.ndarray, bins: int = HISTOGRAM_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [bins], edges [bins + 1]) of every value divided by the largest value over all
    samples (the paper's "attention score (normalized)"); probabilities sum to one."""
    values = scores.ravel() / scores.max()
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    return counts / counts.sum(), edges


def normalized_entropy(scores: np.ndarray) -> float:
    """Mean over samples of the entropy of the sum-normalised attention, divided by log N (1 = uniform)."""
    p = scores / scores.sum(axis=-1, keepdims=True)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)
    return float((entropy / np.log(scores.shape[-1])).mean())
