"""SparseVLM (v1): text raters score the visual tokens; progressive pruning with token recycling.

Zhang et al., "SparseVLM: Visual Token Sparsification for Efficient Vision-Language Model
Inference", ICML 2025, arXiv 2410.04417 (the v1 algorithm as its public code runs it, with fixed
per-layer schedules rather than the paper's rank-based adaptive counts; not v1.5/v2).
Where: inside the language model, after each layer in `layers` (default 2, 6, 15 of LLaVA-1.5's 32):
that layer sees the current tokens, its output is pruned, and the later layers (and their KV cache)
see only what is kept.
Signals: (1) raters, chosen once from the language model's input: the text tokens after the image
whose relevance to the visual tokens (softmax over the text of visual x text embedding products,
averaged over the visual tokens) is above the mean relevance; (2) at each pruning layer, that
layer's attention from the raters to the visual tokens (from its own projections, beside SDPA),
averaged over heads and raters. Needs the question: the raters come from the text after the image.
Pruning at stage s keeps min(k_s, visual - 1) visual tokens (k_s = `schedule[s]` x images in the
prompt); of the dropped ones, the top 30 % (+1) by score are "recycled": clustered by density-peak
k-NN clustering (int(n / 10) + 1 clusters) into merged tokens inserted right after the last kept
visual token, which count as visual tokens for the next stage. Kept tokens are renumbered (rotary
positions without gaps), and decoding continues from the shortened length.
Budget: as in SparseVLM's code, T is a nominal budget that names a published per-layer schedule
(T = 64: 66, 30, 17; 96: 238, 48, 26; 128: 303, 110, 36; 192: 300, 200, 110 visual tokens kept after
layers 2, 6, 15, plus the recycled ones; 96 from the v1 setting of its current main branch), chosen so
the average visual token count over the 32 layers is about T.
Other budgets need an explicit `schedule` (non-increasing, one count per layer); with one, T only names
the run (`pruning_config`, result folders) and the schedule decides what is kept. Where every image of
a family has the same token count N (LLaVA-1.5, Video-LLaVA images), an explicit schedule whose last
count is >= N - 1 would prune nothing and is refused when applied.
Deviations: scores are computed in float32; clustering breaks density ties by token order instead
of by random jitter; rows without a rater above the mean use all their text tokens.
"""

from __future__ import annotations

import math

import torch

from .base import LanguageModelPruner, check_count, check_layers
from .sequence import AttentionRows, Sequence, compact_positions, keep_tokens, last_real_index, top_visual

SCHEDULES = {64: (66, 30, 17), 96: (238, 48, 26), 128: (303, 110, 36), 192: (300, 200, 110)}
RECYCLED_SHARE = 0.3
TOKENS_PER_CLUSTER = 10


def recycled_clusters(num_dropped: int) -> int:
    """How many merged tokens recycling makes from `num_dropped` dropped visual tokens of one row."""
    if num_dropped <= 0:
        return 0
    return (int(num_dropped * RECYCLED_SHARE) + 1) // TOKENS_PER_CLUSTER + 1


def select_raters(embeddings: torch.Tensor, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Mask [L] of the rater tokens of one row: text tokens whose mean relevance to the visual tokens
    (softmax over the text of the visual x text products) is above the mean."""
    products = embeddings[visual].float() @ embeddings[text].float().T  # [V, T]
    relevance = products.softmax(dim=1).mean(dim=0)
    chosen = relevance > relevance.mean()
    if not bool(chosen.any()):
        chosen = torch.ones_like(chosen)
    raters = torch.zeros_like(text)
    raters[text.nonzero()[:, 0][chosen]] = True
    return raters


def cluster_and_merge(tokens: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Density-peak k-NN clustering of tokens [n, C] into `num_clusters` cluster means [num_clusters, C]."""
    count, channels = tokens.shape
    distance = torch.cdist(tokens.float()[None], tokens.float()[None], compute_mode="donot_use_mm_for_euclid_dist")[0]
    distance = distance / math.sqrt(channels)
    nearest = distance.topk(num_clusters, dim=-1, largest=False).values
    density = (-(nearest**2).mean(dim=-1)).exp()
    order = torch.arange(count, device=tokens.device)
    denser = (density[None, :] > density[:, None]) | (
        (density[None, :] == density[:, None]) & (order[None, :] < order[:, None])
    )
    parent_distance = torch.where(denser, distance, distance.max()).min(dim=-1).values
    centres = torch.argsort(parent_distance * density, descending=True, stable=True)[:num_clusters]
    assignment = distance[centres].argmin(dim=0)
    assignment[centres] = torch.arange(num_clusters, device=tokens.device)
    merged = tokens.new_zeros(num_clusters, channels).index_add_(0, assignment, tokens)
    sizes = torch.bincount(assignment, minlength=num_clusters).to(tokens.dtype)
    return merged / (sizes[:, None] + 1e-6)


class SparseVLM(LanguageModelPruner):
    """`sparsevlm`: text-rated progressive pruning with recycling after each of `layers`."""

    name = "sparsevlm"

    def __init__(self, visual_token_num: int, layers=(2, 6, 15), schedule=None):
        super().__init__(visual_token_num)
        self.layers = check_layers(layers, "layers")
        if schedule is None:
            if self.visual_token_num not in SCHEDULES:
                raise ValueError(
                    f"sparsevlm has published schedules for visual_token_num in {sorted(SCHEDULES)}, got "
                    f"{self.visual_token_num}; pass schedule=(k1, k2, ...) with one kept count per layer"
                )
            schedule = SCHEDULES[self.visual_token_num]
        if isinstance(schedule, (str, bytes, dict, set, frozenset)) or not hasattr(schedule, "__len__"):
            raise ValueError(f"schedule must be a list of kept counts, one per layer, got {schedule!r}")
        self.schedule = tuple(check_count(k, "schedule", minimum=1) for k in schedule)
        if len(self.schedule) != len(self.layers):
            raise ValueError(
                f"schedule must have one kept count per pruning layer ({len(self.layers)} layers), got {schedule!r}"
            )
        if any(later > earlier for earlier, later in zip(self.schedule, self.schedule[1:])):
            raise ValueError(
                f"schedule must not grow from one pruning layer to the next (a later layer cannot get dropped "
                f"tokens back), got {schedule!r}"
            )
        # An explicit schedule decides what is kept; visual_token_num then only names the run.
        self._explicit = self.schedule != SCHEDULES.get(self.visual_token_num)

    @property
    def options(self) -> dict:
        return {"layers": self.layers, "schedule": self.schedule}

    def stages(self) -> tuple[int, ...]:
        return tuple(layer + 1 for layer in self.layers)

    def check_item_tokens(self, num_tokens: int, item: str) -> None:
        """An explicit schedule that keeps every token of such an item at each layer is refused: the config
        would name a budget (visual_token_num) while nothing is pruned."""
        if self._explicit and self.schedule[-1] >= num_tokens - 1:
            raise ValueError(
                f"sparsevlm's schedule {self.schedule} cannot prune the {num_tokens}-token {item}: each pruning "
                f"layer keeps min(k, {num_tokens} - 1) tokens and recycles the rest into merged ones, so every layer "
                f"would keep all {num_tokens} (whatever visual_token_num={self.visual_token_num} says); pass counts "
                f"below {num_tokens - 1}"
            )

    def check_depth(self, num_layers: int) -> None:
        for layer in self.layers:
            if not 0 <= layer < num_layers - 1:
                raise ValueError(
                    f"sparsevlm: pruning after layer {layer} does not fit a language model of {num_layers} layers "
                    f"(allowed: 0..{num_layers - 2}); set layers"
                )

    def kept_visual(self, stage: int, visual: int, images: int) -> int:
        kept = min(images * self.schedule[stage], visual - 1)
        return kept + recycled_clusters(visual - kept)

    def attention_queries(self, text_after_image: int) -> int:
        # The raters are the text tokens after the image that pass a data-dependent test; all of them
        # is an upper bound (their rows are a tiny share of a layer's work).
        return text_after_image

    def selection_flops(self, visual: int, text_after_image: int, hidden: int) -> int:
        return 2 * visual * text_after_image * hidden  # the rater choice: visual x text embedding products

    def start(self, sequence: Sequence) -> torch.Tensor:
        """Origins [B, R] of each row's raters (padded with -1)."""
        super().start(sequence)
        visual = sequence.visual
        after_images = sequence.mask & (
            torch.arange(visual.shape[1], device=visual.device) > _last_visual(visual)[:, None]
        )
        rows = []
        for row in range(visual.shape[0]):  # the base check guarantees text after the last image
            raters = select_raters(sequence.hidden[row], visual[row], after_images[row])
            rows.append(sequence.origin[row][raters])
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=-1)

    def reduce(self, stage: int, sequence: Sequence, attention: AttentionRows, raters: torch.Tensor) -> Sequence:
        # Where the raters are now: text tokens are never dropped, so each origin is still present.
        valid = raters >= 0
        present = sequence.origin[:, None, :] == raters[..., None]
        index = torch.where(valid, present.to(torch.int8).argmax(dim=-1), last_real_index(sequence.mask)[:, None])
        rows = attention(index).mean(dim=1).masked_fill(~valid[..., None], 0.0)  # [B, R, L]
        scores = rows.sum(dim=1) / valid.sum(dim=1, keepdim=True)
        visual = sequence.visual
        counts = torch.minimum(sequence.images_per_row() * self.schedule[stage], sequence.visual_per_row() - 1)
        kept_visual = top_visual(scores, visual, counts)
        merged, insert_after = self._recycle(sequence, scores, visual & ~kept_visual, kept_visual)
        return compact_positions(keep_tokens(sequence, kept_visual | ~visual, merged, insert_after))

    def _recycle(self, sequence: Sequence, scores, dropped, kept_visual):
        batch, length, channels = sequence.hidden.shape
        num_dropped = dropped.sum(dim=1).tolist()
        clusters = []
        for row in range(batch):
            if num_dropped[row] == 0:
                clusters.append(sequence.hidden.new_zeros(0, channels))
                continue
            share = int(num_dropped[row] * RECYCLED_SHARE) + 1
            candidates = dropped[row].nonzero()[:, 0]
            best = torch.argsort(scores[row, candidates].float(), descending=True, stable=True)[:share]
            tokens = sequence.hidden[row, candidates[best]]
            clusters.append(cluster_and_merge(tokens, recycled_clusters(num_dropped[row])))
        hidden = torch.nn.utils.rnn.pad_sequence(clusters, batch_first=True)
        sizes = torch.tensor([c.shape[0] for c in clusters], device=hidden.device)
        mask = torch.arange(hidden.shape[1], device=hidden.device)[None] < sizes[:, None]
        image = sequence.image.amax(dim=1, keepdim=True).expand(-1, hidden.shape[1]).masked_fill(~mask, -1)
        positions = sequence.positions.new_zeros((*mask.shape, *sequence.positions.shape[2:]))  # 1-D or M-RoPE
        merged = Sequence(
            hidden=hidden,
            positions=positions,  # placed by compact_positions
            mask=mask,
            image=image,
            origin=torch.full_like(mask, -1, dtype=torch.long),
        )
        return merged, _last_visual(kept_visual)


def _last_visual(visual: torch.Tensor) -> torch.Tensor:
    """[B] index of the last visual token of each row (-1 if none)."""
    positions = torch.arange(visual.shape[1], device=visual.device)
    return torch.where(visual, positions, -1).amax(dim=1)
