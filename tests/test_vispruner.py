import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from llava.pruning import create_pruner, list_methods
from llava.pruning.base import VisionFeatures
from llava.pruning.vispruner import VisPruner, compiled_select, select, split_budget
from published_vispruner import PublishedCodeFails, published_select

CASES = [
    (n, c, t, r, b, dtype)
    for dtype in (torch.float32, torch.float64)
    for n, c in ((576, 64), (100, 16), (64, 1024))
    for t in (2, 8, 16, 32, 40, 64, 128)
    for r in (0.0, 0.25, 0.5, 0.75, 1.0)
    for b in (1, 3)
]


def random_inputs(b, n, c, seed, dtype=torch.float32, heads=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, c, generator=g, dtype=dtype), torch.rand(b, heads, n, generator=g, dtype=dtype)


def test_matches_published_procedure_wherever_it_runs():
    compared = 0
    for seed, (n, c, t, r, b, dtype) in enumerate(CASES):
        features, attention = random_inputs(b, n, c, seed, dtype)
        try:
            expected = published_select(features, attention, t, r)
        except PublishedCodeFails:
            continue
        assert torch.equal(select(features, attention, t, r), expected), (n, c, t, r, b, dtype)
        compared += 1
    assert compared > 200  # most cases run in the published code too


@pytest.mark.parametrize("t, r", [(63, 0.5), (64, 0.9), (58, 0.5), (16, 0.75), (8, 0.5), (3, 0.0), (9, 0.34), (1, 0.0)])
def test_where_published_code_fails_exactly_t_distinct_tokens_with_the_important_ones(t, r):
    features, attention = random_inputs(2, 576, 32, seed=t)
    with pytest.raises(PublishedCodeFails):
        published_select(features, attention, t, r)
    kept = select(features, attention, t, r)
    num_important, _ = split_budget(t, r)
    important = attention.mean(1).argsort(dim=-1, descending=True)[:, :num_important]
    assert kept.shape == (2, t)
    for row, imp in zip(kept, important):
        assert len(set(row.tolist())) == t
        assert set(imp.tolist()) <= set(row.tolist())
        assert torch.equal(row, row.sort().values)


def test_ratio_one_is_pure_cls_top_t():
    features, attention = random_inputs(3, 576, 64, seed=1)
    expected = attention.mean(1).topk(64, dim=-1).indices.sort(dim=-1).values
    assert torch.equal(select(features, attention, 64, 1.0), expected)


def test_two_dimensional_attention_equals_head_mean():
    features, attention = random_inputs(2, 144, 16, seed=2)
    assert torch.equal(select(features, attention, 32, 0.5), select(features, attention.mean(1), 32, 0.5))


@pytest.mark.parametrize("t", [576, 577, 1000])
def test_budget_at_least_n_keeps_everything(t):
    features, attention = random_inputs(2, 576, 8, seed=3)
    assert torch.equal(select(features, attention, t, 0.5), torch.arange(576).expand(2, 576))


def test_batch_rows_are_independent():
    features, attention = random_inputs(3, 576, 64, seed=4)
    together = select(features, attention, 64, 0.5)
    for i in range(3):
        assert torch.equal(select(features[i : i + 1], attention[i : i + 1], 64, 0.5)[0], together[i])


def test_ties_are_broken_by_position_deterministically():
    features = torch.ones(2, 64, 8)  # every token alike: every score ties
    attention = torch.ones(2, 64)
    first = select(features, attention, 16, 0.5)
    assert torch.equal(first, select(features, attention, 16, 0.5))
    assert first[:, :8].tolist() == [list(range(8))] * 2  # the important half: the first tokens in raster order


@pytest.mark.parametrize("t", [0, -1, 64.0, "64", True, None])
def test_bad_token_num_names_the_argument(t):
    features, attention = random_inputs(1, 64, 8, seed=5)
    with pytest.raises(ValueError, match="visual_token_num"):
        select(features, attention, t, 0.5)


@pytest.mark.parametrize("r", [-0.1, 1.5, float("nan"), "0.5", None])
def test_bad_ratio_names_the_argument_and_range(r):
    features, attention = random_inputs(1, 64, 8, seed=6)
    with pytest.raises(ValueError, match=r"important_ratio.*\[0, 1\]"):
        select(features, attention, 16, r)


def test_mismatched_shapes_are_rejected():
    features, attention = random_inputs(2, 64, 8, seed=7)
    with pytest.raises(ValueError, match="importance"):
        select(features, attention[:, :, :32], 16, 0.5)
    with pytest.raises(ValueError, match="features"):
        select(features[0], attention, 16, 0.5)


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_one_similarity_matrix_and_no_host_sync():
    features, attention = random_inputs(2, 576, 64, seed=8)
    with CountOps() as ops:
        select(features, attention, 64, 0.5)  # 64 rounds of matching
    matmuls = [c for c in ops.calls if c in ("mm", "bmm", "matmul", "baddbmm", "addmm")]
    assert len(matmuls) == 1
    assert "_local_scalar_dense" not in ops.calls  # .item() / bool(tensor): the host would wait on the device


def test_registry_and_pruner_settings():
    assert "vispruner" in list_methods()
    pruner = create_pruner("vispruner", 64, important_ratio=0.75)
    assert pruner.config.options == {"important_ratio": 0.75}
    with pytest.raises(ValueError, match="important_ratio"):
        create_pruner("vispruner", 64, important_ratio=2)
    with pytest.raises(ValueError, match="unknown option.*ratio"):
        create_pruner("vispruner", 64, ratio=0.5)
    with pytest.raises(ValueError, match="unknown pruning method 'nope'.*vispruner"):
        create_pruner("nope", 64)


def test_compiled_selection_keeps_the_same_tokens():
    features, attention = random_inputs(2, 64, 16, seed=9)
    expected = select(features, attention, 16, 0.5)
    assert torch.equal(compiled_select(features, attention, 16, 0.5), expected)
    pruner = VisPruner(16, important_ratio=0.5, compile=True)  # on the CPU: the fused C++ rounds
    assert pruner.options == {"important_ratio": 0.5, "compile": True}
    assert torch.equal(pruner.select(VisionFeatures(features, (8, 8), attention)), expected)
    with pytest.raises(ValueError, match="compile"):
        VisPruner(16, compile="yes")


def test_half_precision_follows_the_published_computation_and_float32_is_an_option():
    """In float16 the similarities are float16 numbers, as the published code computes them: the same
    tokens as its (stably sorted) restatement; `float32_similarity=True` is the other computation."""
    agree = differ = 0
    for seed in range(6):
        generator = torch.Generator().manual_seed(seed)
        centres = torch.randn(1, 8, 64, generator=generator).repeat_interleave(72, dim=1)
        features = (torch.randn(1, 576, 64, generator=generator) + centres).half()
        attention = torch.rand(1, 576, generator=generator)
        for t in (32, 64, 128):
            expected = published_select(features, attention, t, 0.5)
            agree += torch.equal(select(features, attention, t, 0.5), expected)
            differ += not torch.equal(select(features, attention, t, 0.5, float32_similarity=True), expected)
    assert agree == 18
    assert differ > 0, "float32 similarities never changed the kept set: the option does nothing here"
    assert VisPruner(64, float32_similarity=True).options == {"important_ratio": 0.5, "float32_similarity": True}
    with pytest.raises(ValueError, match="float32_similarity must be True or False"):
        VisPruner(64, float32_similarity="yes")
