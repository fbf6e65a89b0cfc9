"""The diverse step's exact routes (llava/pruning/diversity.py) keep the same tokens as the rounds they
replace, in every pool size, batch and precision: the gather route for small pools, the neighbour
windows (with their exact fallback and rebuilds) for large ones, and the fused C++ loop (compile=True
on the CPU)."""

import os
import shutil

import pytest
import torch

from efficiency.selection_scaling import previous_rounds  # the loop before issue 19
from llava.pruning import diversity, fused_rounds
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


needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "c++")) is None, reason="the fused rounds need a C++ compiler to build"
)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("batch, size, keep, clusters", CASES)
def test_the_fused_loop_keeps_the_previous_rounds_tokens_in_the_same_order(batch, size, keep, clusters, dtype):
    similarity = clustered_similarity(batch, size, clusters, seed=size + keep, dtype=torch.float64).to(dtype)
    assert torch.equal(diverse_positions(similarity, keep, fused=True), previous_rounds(similarity, keep))


@needs_compiler
def test_the_fused_loop_ranks_ties_nan_and_infinities_as_torch_does():
    generator = torch.Generator().manual_seed(0)
    similarity = torch.randint(0, 3, (2, 130, 130), generator=generator).to(torch.float32) / 2  # many exact ties
    similarity[0, 5, 7] = similarity[1, 40, 3] = float("nan")
    similarity[0, 9, :] = float("inf")
    similarity[1, :, 11] = float("-inf")
    similarity[0, 20, 21] = float("-inf")
    for keep in (1, 17, 64):
        assert torch.equal(diverse_positions(similarity, keep, fused=True), previous_rounds(similarity, keep))


@needs_compiler
def test_the_fused_loop_hands_large_pools_to_the_windows(monkeypatch):
    monkeypatch.setattr(diversity, "FUSED_POOL", 100)
    called = []
    monkeypatch.setattr(diversity, "_rounds_by_neighbours", lambda *a: called.append(1) or previous_rounds(a[0], a[1]))
    similarity = clustered_similarity(1, 300, 8, seed=1, dtype=torch.float32)
    diverse_positions(similarity, 20, neighbour_pool=200, fused=True)
    assert called, "a pool above FUSED_POOL must take the neighbour windows"


def test_a_failed_build_says_what_is_missing_and_how_to_go_on(monkeypatch):
    import torch.utils.cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension: c++: command not found")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", no_compiler)
    fused_rounds.load.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="C\\+\\+ compiler.*compile=False keeps the same tokens"):
            fused_rounds.load()
    finally:
        fused_rounds.load.cache_clear()


@pytest.mark.parametrize(
    "batch, size, keep, dtype",
    [(1, 544, 32, torch.float32), (3, 129, 64, torch.float64), (2, 300, 128, torch.float16)],
)
def test_the_compiled_rounds_trace_into_one_graph_that_keeps_the_same_tokens(batch, size, keep, dtype):
    """What CUDA captures as a graph (compile=True there), traced on the CPU: one graph, no break, and
    the previous rounds' tokens (in half precision too, where equal best matches are common)."""
    from torch._dynamo.utils import counters

    similarity = clustered_similarity(batch, size, 8, seed=size, dtype=torch.float64).to(dtype)
    torch._dynamo.reset()
    counters.clear()
    rounds = diversity.compiled_rounds("cpu", backend="aot_eager")
    with torch.no_grad():
        positions = rounds(similarity, keep)
    assert not counters["graph_break"] and counters["stats"]["unique_graphs"] == 1
    assert torch.equal(positions, previous_rounds(similarity, keep))
    assert not positions.is_inference()  # usable wherever the caller is, though traced in inference mode
    with torch.inference_mode():  # the same graph from another autograd mode
        assert torch.equal(rounds(similarity, keep), positions) and counters["stats"]["unique_graphs"] == 1
