"""The baselines' algorithms as pure tensor functions, against slow literal restatements."""

import pytest
import torch

import published_baselines as published
from llava.models import clip
from llava.pruning import create_pruner, divprune, pool, prumerge, random_pruning, sparsevlm, tome, visionzip
from llava.pruning.base import LayerProjections, VisionFeatures
from llava.pruning.sequence import Sequence, compact_positions, keep_tokens


def rng(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("seed", range(4))
def test_divprune_matches_the_published_greedy(seed):
    g = rng(seed)
    tokens = torch.randn(2, 30, 12, generator=g, dtype=torch.float64)
    got = divprune.select(tokens, 7)
    for row in range(2):
        assert got[row].tolist() == published.divprune(tokens[row], 7)


@pytest.mark.parametrize("seed, budget, contextual", [(0, 16, 3), (1, 9, 2), (2, 5, 0), (3, 20, 19)])
def test_visionzip_matches_the_official_steps(seed, budget, contextual):
    g = rng(seed)
    features, cls_token = torch.randn(2, 36, 8, generator=g), torch.randn(2, 8, generator=g)
    attention, keys = torch.rand(2, 4, 36, generator=g), torch.randn(2, 36, 6, generator=g)
    got = visionzip.compress(features, cls_token, attention, keys, budget, contextual)
    assert got.shape == (2, budget, 8)
    for row in range(2):
        expected = published.visionzip(
            features[row], cls_token[row], attention[row], keys[row], budget - contextual - 1, contextual
        )
        assert torch.allclose(got[row], expected, atol=1e-5)
    assert [visionzip.default_contextual(t) for t in (64, 128, 192)] == [10, 20, 30]


@pytest.mark.parametrize("seed, tokens, count", [(0, 17, 5), (1, 16, 7), (2, 9, 4), (3, 33, 1)])
def test_tome_matching_and_weighted_merge_match_the_paper_procedure(seed, tokens, count):
    g = rng(seed)
    x, metric = (
        torch.randn(2, tokens, 6, generator=g, dtype=torch.float64),
        torch.randn(2, tokens, 5, generator=g, dtype=torch.float64),
    )
    size = torch.randint(1, 4, (2, tokens, 1), generator=g).double()
    merged, new_size = tome.merge_weighted(x, size, tome.bipartite_match(metric, count))
    for row in range(2):
        expected, expected_size = published.tome_merge(x[row], size[row, :, 0], metric[row], count)
        assert torch.allclose(merged[row], expected) and torch.allclose(new_size[row, :, 0], expected_size)


def test_tome_schedule_reaches_the_budget_or_says_why():
    assert tome.merge_schedule(576, 64, 23) == [23] * 6 + [22] * 17
    assert sum(tome.merge_schedule(64, 16, 3)) == 48 and tome.merge_schedule(64, 64, 3) == [0, 0, 0]
    with pytest.raises(ValueError, match="visual_token_num=1"):
        tome.merge_schedule(64, 1, 3)


def manual_tome_tower(tower, pixels, depth, budget):
    """ToMe through CLIP layers with explicit (eager) attention and the log-size bias."""
    hidden = tower.pre_layrnorm(tower.embeddings(pixels))
    size = torch.ones(hidden.shape[0], hidden.shape[1])
    for layer, count in zip(tower.encoder.layers[:depth], tome.merge_schedule(hidden.shape[1] - 1, budget, depth)):
        attention = layer.self_attn
        normed = layer.layer_norm1(hidden)
        b, t, c = normed.shape
        heads = attention.num_heads

        q, k, v = (
            proj(normed).view(b, t, heads, c // heads).transpose(1, 2)
            for proj in (attention.q_proj, attention.k_proj, attention.v_proj)
        )
        weights = torch.softmax(q @ k.transpose(-1, -2) * attention.scale + size.log()[:, None, None, :], dim=-1)
        hidden = hidden + attention.out_proj((weights @ v).transpose(1, 2).reshape(b, t, c))
        metric = k.mean(dim=1)
        rows = [published.tome_merge(hidden[i], size[i], metric[i], count) for i in range(b)]
        hidden, size = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])
        hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
    return hidden[:, 1:]


def test_tome_inside_clip_uses_proportional_attention_through_sdpa(tiny, images):
    model, processor = tiny
    tower = model.model.vision_tower
    pixels = processor.image_processor(images[:2], return_tensors="pt").pixel_values
    with torch.no_grad():
        got = clip.encode(tower, pixels, -2, merger=tome.ToMe(16)).features
        expected = manual_tome_tower(tower, pixels, 3, 16)
        unmerged = clip.encode(tower, pixels, -2, merger=tome.ToMe(64)).features
        stock = tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    assert got.shape == (2, 16, tower.config.hidden_size)
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.allclose(unmerged, stock, atol=1e-5)


def test_prumerge_plus_selection_and_merge():
    g = rng(0)
    attention = torch.rand(2, 64, generator=g) ** 4
    attention[0, [5, 9]] = 3.0  # clear outliers
    attention = attention / attention.sum(dim=1, keepdim=True)
    kept = prumerge.select(attention, 15)
    counts = prumerge.outlier_count(attention)
    for row in range(2):
        n = int(counts[row])
        order = torch.argsort(attention[row], descending=True, stable=True)
        assert kept[row, :n].tolist() == order[:n].tolist()
        spatial = kept[row, n:]
        assert len(set(kept[row].tolist())) == 15 and torch.all(spatial.diff() > 0)
        others = sorted(set(range(64)) - set(order[:n].tolist()))
        assert spatial.tolist() == [others[(2 * j + 1) * len(others) // (2 * (15 - n))] for j in range(15 - n)]
    q1, q3 = attention[0].quantile(0.25), attention[0].quantile(0.75)
    assert int(counts[0]) == int((attention[0] > q3 + 1.5 * (q3 - q1)).sum()) >= 2
    features, keys = (
        torch.randn(2, 64, 8, generator=g, dtype=torch.float64),
        torch.randn(2, 64, 5, generator=g, dtype=torch.float64),
    )
    merged = prumerge.merge(features, keys, attention.double(), kept, 6)
    assert merged.shape == (2, 16, 8)
    for row in range(2):
        expected = published.prumerge_plus_merge(
            features[row], keys[row], attention[row].double(), kept[row].tolist(), 6
        )
        assert torch.allclose(merged[row], expected)


def test_prumerge_plus_attention_is_one_head_over_the_full_width():
    g = rng(1)
    projections = LayerProjections(torch.randn(2, 16, generator=g), torch.randn(2, 10, 16, generator=g), 4)
    got = prumerge.cls_attention(projections, 16)
    full = torch.softmax(torch.einsum("bc,bnc->bn", projections.cls_query, projections.keys) / 4.0, dim=-1)
    assert torch.allclose(got, full[:, 1:], atol=1e-6)


def test_pool_grid_and_values():
    assert [pool.pooled_grid((24, 24), t) for t in (192, 128, 64, 32, 576, 1000)] == [
        (13, 14),
        (11, 11),
        (8, 8),
        (5, 6),
        (24, 24),
        (24, 24),
    ]
    features = torch.arange(2 * 64 * 3, dtype=torch.float32).view(2, 64, 3)
    pooled = pool.pool(features, (8, 8), 16)
    grid = features.view(2, 8, 8, 3)
    expected = grid.view(2, 4, 2, 4, 2, 3).mean(dim=(2, 4)).reshape(2, 16, 3)
    assert torch.allclose(pooled, expected)


def test_random_is_reproducible_for_a_seed():
    def draws(seed):
        pruner = random_pruning.RandomPruner(8, seed=seed)
        vision = VisionFeatures(torch.zeros(3, 40, 2), (5, 8))
        return [pruner.select(vision) for _ in range(3)]

    first, again, other = draws(7), draws(7), draws(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert not torch.equal(first[0], first[1])  # fresh positions per call and per image
    for selection in first:
        assert selection.shape == (3, 8) and all(len(set(row.tolist())) == 8 for row in selection)
        assert torch.all(selection.diff(dim=1) > 0)


def test_random_parts_with_their_own_budget_continue_one_stream():
    """Crops and frames that share a total get their own budget (`with_budget`); they draw from the
    pruner's one stream, so each call takes fresh positions and a re-applied pruner repeats the calls."""
    vision = VisionFeatures(torch.zeros(1, 40, 2), (5, 8))

    def calls(pruner):
        return [pruner.with_budget(4).select(vision) for _ in range(3)] + [pruner.select(vision)]

    first, again = calls(random_pruning.RandomPruner(8, seed=1)), calls(random_pruning.RandomPruner(8, seed=1))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    fresh = random_pruning.RandomPruner(8, seed=1).select(vision)
    assert not torch.equal(first[3], fresh)  # the parts' draws came out of the same stream
    assert [s.shape[1] for s in first] == [4, 4, 4, 8]


def test_another_budget_keeps_the_options():
    pruner = create_pruner("vispruner", 16, important_ratio=0.25)
    other = pruner.with_budget(8)
    assert (other.visual_token_num, other.options) == (8, pruner.options) and pruner.with_budget(16) is pruner


@pytest.mark.parametrize("seed, n, clusters", [(0, 12, 2), (1, 25, 3), (2, 7, 1)])
def test_sparsevlm_clustering_matches_density_peaks(seed, n, clusters):
    tokens = torch.randn(n, 6, generator=rng(seed), dtype=torch.float64)
    assert torch.allclose(sparsevlm.cluster_and_merge(tokens, clusters), published.dpc_knn(tokens, clusters))


def test_sparsevlm_raters_are_text_tokens_above_mean_relevance():
    g = rng(3)
    embeddings = torch.randn(10, 4, generator=g)
    visual = torch.zeros(10, dtype=torch.bool)
    visual[2:6] = True
    text = torch.zeros(10, dtype=torch.bool)
    text[6:] = True
    relevance = (embeddings[2:6] @ embeddings[6:].T).softmax(dim=1).mean(dim=0)
    raters = sparsevlm.select_raters(embeddings, visual, text)
    assert raters[6:].tolist() == (relevance > relevance.mean()).tolist() and not raters[:6].any()


def make_sequence(mask_rows):
    mask = torch.tensor(mask_rows, dtype=torch.bool)
    b, length = mask.shape
    image = torch.tensor([[0 if 2 <= i < 6 else -1 for i in range(length)]] * b)
    hidden = torch.arange(b * length, dtype=torch.float32).view(b, length, 1)
    return Sequence(hidden, torch.arange(length).expand(b, -1), mask, image, torch.arange(length).expand(b, -1))


def test_keep_tokens_pads_on_the_batch_side_and_inserts_after_a_token():
    left = make_sequence([[0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]])
    keep = torch.ones(2, 8, dtype=torch.bool)
    keep[0, [2, 3]] = False  # row 0 drops two visual tokens, row 1 one
    keep[1, 4] = False
    out = keep_tokens(left, keep)  # row 0 keeps 6 (its padding included), row 1 keeps 7: row 0 gets one fill slot
    assert out.origin[0].tolist() == [-1, 0, 1, 4, 5, 6, 7] and out.mask[0].tolist() == [False, False] + [True] * 5
    assert out.origin[1].tolist() == [0, 1, 2, 3, 5, 6, 7] and out.mask[1].all()
    inserted = Sequence(
        torch.full((2, 2, 1), -1.0),
        torch.zeros(2, 2, dtype=torch.long),
        torch.tensor([[1, 1], [1, 0]]).bool(),
        torch.zeros(2, 2, dtype=torch.long),
        torch.full((2, 2), -1),
    )
    out = keep_tokens(left, keep, inserted, torch.tensor([5, 5]))
    assert out.origin[0].tolist() == [0, 1, 4, 5, -1, -1, 6, 7] and out.mask[0].tolist() == [False] + [True] * 7
    assert out.origin[1].tolist() == [0, 1, 2, 3, 5, -1, 6, 7]
    right = make_sequence([[1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
    out = keep_tokens(right, keep)
    assert out.mask[0].tolist() == [True] * 5 + [False, False] and out.mask[1].all()
    assert compact_positions(out).positions[0, :5].tolist() == [0, 1, 2, 3, 4]
