"""The diverse step's two exact routes (llava/pruning/diversity.py) keep the same tokens as the rounds they
replace, in every pool size, batch and precision: the gather route for small pools, the neighbour
windows (with their exact fallback and rebuilds) for large ones."""

import pytest
import torch

from efficiency.selection_scaling import previous_rounds  # the loop before issue 19
from llava.pruning import diversity
from llava.pruning.diversity import diverse_positions


def clustered_similarity(batch, size, clusters, seed, dtype, width=48):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(batch, clusters, width, generator=generator, dtype=dtype)
    assign = torch.randint(0, clusters, (batch, size), generator=generator)
    noise = torch.randn(batch, size, width, generator=generator, dtype=dtype)
    unit = torch.nn.functional.normalize(
        centres.gather(1, assign[..., None].expand(-1, -1, width)) + 0.3 * noise, dim=-1
    )
    return unit @ unit.transpose(1, 2)


CASES = [  # (batch, pool size, keep, clusters): odd pools, keep from 1 to most of the pool
    (1, 544, 32, 24), (1, 545, 7, 3), (2, 300, 128, 40), (3, 129, 64, 5), (1, 97, 1, 2), (2, 1100, 50, 12),
    (1, 40, 39, 4), (3, 257, 100, 64),
]  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch, size, keep, clusters", CASES)
def test_both_routes_keep_the_previous_rounds_tokens_in_the_same_order(batch, size, keep, clusters, dtype):
    similarity = clustered_similarity(batch, size, clusters, seed=size + keep, dtype=dtype)
    expected = previous_rounds(similarity, keep)
    assert torch.equal(diverse_positions(similarity, keep, neighbour_pool=10**9), expected)  # gather route
    assert torch.equal(diverse_positions(similarity, keep, neighbour_pool=0), expected)  # neighbour windows


def test_windows_too_narrow_for_any_odd_neighbour_fall_back_to_exact_maxima(monkeypatch):
    """With one neighbour per token most rows find no odd one: the exact fallback and frequent rebuilds
    must still give the same tokens."""
    calls = []
    fill = diversity._fill_missing
    monkeypatch.setattr(diversity, "_fill_missing", lambda *a: calls.append(1) or fill(*a))
    monkeypatch.setattr(diversity, "WINDOW", 1)
    monkeypatch.setattr(diversity, "REBUILD_SHARE", 0.95)
    similarity = clustered_similarity(2, 400, 6, seed=3, dtype=torch.float64)
    assert torch.equal(diverse_positions(similarity, 20, neighbour_pool=0), previous_rounds(similarity, 20))
    assert calls, "the fallback was never needed: the test does not reach it"


def test_equal_similarities_rank_by_position_as_before():
    similarity = torch.ones(1, 64, 64, dtype=torch.float64)  # every best match ties
    for pool in (0, 10**9):
        assert torch.equal(diverse_positions(similarity, 10, neighbour_pool=pool), previous_rounds(similarity, 10))
