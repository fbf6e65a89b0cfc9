"""VisPruner: important tokens by [CLS] attention plus diverse tokens by similarity.

Zhang et al., "Beyond Text-Visual Attention: Exploiting Visual Cues for Effective Token Pruning in
VLMs", ICCV 2025, arXiv 2412.01818 (v2). Prunes before the language model, on the pre-projector
features of the layer LLaVA reads (`vision_feature_layer`), using that layer's [CLS] -> patch
attention (importance) and the cosine similarity between patch features (diversity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import fused_rounds
from .base import IMPORTANCE, VisionFeatures, VisionTokenPruner, check_ratio, check_token_num
from .diversity import diverse_positions


def split_budget(visual_token_num: int, important_ratio: float) -> tuple[int, int]:
    """(important, diverse) token counts: int(T * r) and the rest, truncating as the paper's code does."""
    num_important = int(visual_token_num * important_ratio)
    return num_important, visual_token_num - num_important


def attention_order(importance: torch.Tensor) -> torch.Tensor:
    """Patch indices [B, N] by descending head-mean attention ([CLS] or received); ties go to the lower index."""
    if importance.dim() == 3:
        importance = importance.mean(dim=1)
    return torch.argsort(importance, dim=-1, descending=True, stable=True)


def select(
    features: torch.Tensor,
    importance: torch.Tensor,
    visual_token_num: int,
    important_ratio: float = 0.5,
    float32_similarity: bool = False,
) -> torch.Tensor:
    """Indices of the T = `visual_token_num` tokens VisPruner keeps, [B, T] ascending (raster order).

    features:      [B, N, C] vision features of the feature layer, before the projector.
    importance:    [B, N] or [B, H, N] attention of that layer (heads are averaged): [CLS] -> patch
                   attention, or for encoders without [CLS] the mean attention each token receives.

    T_imp = int(T * r) tokens with the highest attention are kept. The others, in descending
    attention order, form a residual pool that goes through rounds of even/odd bipartite matching on
    L2-normalised features: each round the `min(8, remaining - T_div)` even-position tokens whose best
    cosine match among the odd-position tokens is highest are dropped, and the pool is re-ordered as
    the surviving even-position tokens (by descending best match) followed by the odd-position ones,
    until T_div = T - T_imp remain. Ties break towards the earlier position (stable sorts).

    Where the published code fails, this function goes on by the same rule: with an odd pool the even
    side holds one token more than the odd side, and a round that asks to drop more tokens than stand
    on the even side drops all of them (the next round continues from the odd side). The result is
    always exactly T distinct tokens that include the T_imp most-attended ones. T >= N keeps all N.
    Similarities are computed once for the whole residual pool, in the features' precision, as the
    published code computes them (half-precision features are compared in half precision);
    `float32_similarity=True` compares half-precision features in float32 instead (fewer exact ties;
    a different kept set, see docs/methods.md). The published code sorts with an unstable
    argsort, so where two scores are exactly equal its order is left to the sorting kernel; here
    the earlier position always wins, on every device.
    """
    return _select(*_checked(features, importance, visual_token_num, important_ratio), float32_similarity)


def compiled_select(
    features: torch.Tensor,
    importance: torch.Tensor,
    visual_token_num: int,
    important_ratio: float = 0.5,
    float32_similarity: bool = False,
) -> torch.Tensor:
    """`select` without paying an operator dispatch (or a kernel launch) for each of the ~7 steps of
    each of the ~60 rounds; the same tokens. On the CPU the rounds run in one C++ loop
    (`fused_rounds.py`, built once per machine, about 10 s); on CUDA they are traced once per pool
    size and budget and replayed as one CUDA graph (`diversity.compiled_rounds`), so it pays off for
    runs at a fixed shape. The similarity matrix is computed as `select` computes it."""
    return _select(*_checked(features, importance, visual_token_num, important_ratio), float32_similarity, fused=True)


def select_split(
    features: torch.Tensor,
    importance: torch.Tensor,
    visual_token_num: int,
    important_ratio: float = 0.5,
    float32_similarity: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`select`'s kept tokens and which of them are the important ones: (kept [B, T] ascending, the same
    indices as `select`; important [B, int(T * r)] ascending, the most-attended tokens). The other kept
    tokens are the diverse ones. T >= N keeps all N and selects nothing: important is then [B, 0]."""
    arguments = _checked(features, importance, visual_token_num, important_ratio)
    return _select_split(*arguments, float32_similarity)


def _select(features, importance, visual_token_num: int, important_ratio: float, float32: bool, fused=False):
    batch, num_tokens, _ = features.shape
    if visual_token_num >= num_tokens:
        return torch.arange(num_tokens, device=features.device).expand(batch, num_tokens)
    parts = _parts(features, importance, visual_token_num, important_ratio, float32, fused)
    return torch.cat(parts, dim=1).sort(dim=-1).values


def _select_split(features, importance, visual_token_num: int, important_ratio: float, float32: bool, fused=False):
    batch, num_tokens, _ = features.shape
    if visual_token_num >= num_tokens:
        kept = torch.arange(num_tokens, device=features.device).expand(batch, num_tokens)
        return kept, kept[:, :0]
    important, diverse = _parts(features, importance, visual_token_num, important_ratio, float32, fused)
    return torch.cat([important, diverse], dim=1).sort(dim=-1).values, important.sort(dim=-1).values


def _parts(features, importance, visual_token_num: int, important_ratio: float, float32: bool, fused: bool):
    """(important [B, T_imp] by descending attention, diverse [B, T_div]) for T < N."""
    num_important, num_diverse = split_budget(visual_token_num, important_ratio)
    order = attention_order(importance)
    important = order[:, :num_important]
    if num_diverse == 0:
        return important, order[:, :0]
    return important, diverse_tokens(features, order[:, num_important:], num_diverse, float32, fused)


def diverse_tokens(
    features: torch.Tensor, pool: torch.Tensor, keep: int, float32: bool = False, fused: bool = False
) -> torch.Tensor:
    """Reduce `pool` [B, R] (token indices, in priority order) to `keep` tokens by iterative matching
    (`diversity.py`: the rounds, read off one similarity matrix computed here once, in the features'
    precision or, with `float32`, in at least float32; `fused`: the rounds compiled, never the matrix)."""
    widened = float32 and features.dtype not in (torch.float32, torch.float64)
    unit = F.normalize(features.float() if widened else features, dim=-1)
    pool_unit = unit.gather(1, pool.unsqueeze(-1).expand(-1, -1, unit.shape[-1]))
    similarity = pool_unit @ pool_unit.transpose(1, 2)  # [B, R, R], once for all rounds
    return pool.gather(1, diverse_positions(similarity, keep, fused=fused))


def _checked(features: torch.Tensor, importance: torch.Tensor, visual_token_num, important_ratio):
    """The arguments of `select`, checked (ValueError naming the argument) and normalised."""
    visual_token_num = check_token_num(visual_token_num)
    important_ratio = check_ratio(important_ratio, "important_ratio")
    _check_shapes(features, importance)
    return features, importance, visual_token_num, important_ratio


def _check_shapes(features: torch.Tensor, importance: torch.Tensor) -> None:
    if features.dim() != 3:
        raise ValueError(f"features must be [B, N, C], got shape {tuple(features.shape)}")
    if importance.dim() not in (2, 3):
        raise ValueError(f"importance must be [B, N] or [B, H, N], got shape {tuple(importance.shape)}")
    batch, num_tokens, _ = features.shape
    if importance.shape[0] != batch or importance.shape[-1] != num_tokens:
        raise ValueError(
            f"importance {tuple(importance.shape)} does not match features {tuple(features.shape)}: "
            "batch and token dimensions must agree"
        )


class VisPruner(VisionTokenPruner):
    """`vispruner`: T tokens = int(T * important_ratio) by importance ([CLS] attention, or the attention
    tokens receive on encoders without [CLS]) + the rest by diversity."""

    name = "vispruner"
    requires = frozenset({IMPORTANCE})

    def __init__(
        self,
        visual_token_num: int,
        important_ratio: float = 0.5,
        compile: bool = False,
        float32_similarity: bool = False,
    ):
        super().__init__(visual_token_num)
        self.important_ratio = check_ratio(important_ratio, "important_ratio")
        for name, value in (("compile", compile), ("float32_similarity", float32_similarity)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        self.compile = compile  # same tokens either way; see `compiled_select`
        self.float32_similarity = float32_similarity  # not the published computation in half precision

    @property
    def options(self) -> dict:
        flags = {"compile": self.compile, "float32_similarity": self.float32_similarity}
        return {"important_ratio": self.important_ratio, **{name: True for name, on in flags.items() if on}}

    def prepare(self, device: torch.device) -> None:
        if self.compile and torch.device(device).type == "cpu":
            fused_rounds.load()  # builds the C++ rounds now, or says why it cannot, before any work

    def select(self, vision: VisionFeatures) -> torch.Tensor:
        return _select(*self._arguments(vision), self.float32_similarity, fused=self.compile)

    def select_split(self, vision: VisionFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        return _select_split(*self._arguments(vision), self.float32_similarity, fused=self.compile)

    def _arguments(self, vision: VisionFeatures) -> tuple:
        return _checked(vision.features, vision.importance, self.visual_token_num, self.important_ratio)

    def selection_flops(self, num_tokens: int, width: int, num_heads: int) -> int:
        num_important, num_diverse = split_budget(self.visual_token_num, self.important_ratio)
        if self.visual_token_num >= num_tokens or num_diverse == 0:
            return 0
        pool = num_tokens - num_important
        return 2 * pool * pool * width  # the residual pool's similarity matrix, once for all rounds
