"""Gemma 3's vision side (a SigLIP tower and `Gemma3MultiModalProjector`): the pooled tokens the
language model sees and the attention their patches receive, for pruning the pooled tokens.

The stock path reads the tower's `last_hidden_state` (every encoder layer, then `post_layernorm`),
average-pools each k x k group of patches into one token (64 x 64 patches -> 16 x 16 = 256 tokens at
896 px), applies an RMSNorm and a linear map. SigLIP has no [CLS], so importance is the mean attention
each patch receives in the feature layer (the last), averaged over queries, heads kept apart
(`siglip.encode`, computed beside SDPA), summed over each pooled group as the tokens are pooled.

The features handed to methods are the pooled tokens after the projector's RMSNorm: the norm acts per
token, so normalising before selection changes no kept token, and similarities (DivPrune, VisPruner's
diversity) are then measured on exactly what the projector's linear map reads, with the learned
per-channel gains applied and no dependence on a token's overall scale. `project` is the rest of the
projector (the linear map), applied to the kept tokens only.
"""

from __future__ import annotations

import torch

from ..pruning.base import VisionFeatures
from . import siglip

SIGNALS = siglip.SIGNALS
NOTE = (
    " (Gemma 3 prunes 4x4-pooled tokens of a SigLIP tower without [CLS]: its 'received_attention' is the "
    "mean attention each patch receives, summed over its pooled group)"
)
FEATURE_LAYER = -1  # the stock path reads the tower's last_hidden_state


def encode(inner, pixel_values: torch.Tensor, signals=frozenset()) -> VisionFeatures:
    """Pooled, normalised features [B, N/k^2, C] on the pooled grid and, when asked for, "received_attention"
    [B, H, N/k^2]: the mean attention the patches of each group receive, summed. `inner` is the
    `Gemma3Model` (its `vision_tower` and `multi_modal_projector`)."""
    tower, projector = inner.vision_tower, inner.multi_modal_projector
    vision = siglip.encode(tower, pixel_values.to(dtype=tower.dtype), FEATURE_LAYER, signals)
    hidden = tower.post_layernorm(vision.features)
    batch, _, width = hidden.shape
    side = projector.patches_per_image
    grid = projector.tokens_per_side, projector.tokens_per_side
    patches = hidden.transpose(1, 2).reshape(batch, width, side, side)
    pooled = projector.avg_pool(patches).flatten(2).transpose(1, 2)  # as the stock projector pools
    features = projector.mm_soft_emb_norm(pooled)
    received = None if vision.received_attention is None else pool_received(vision.received_attention, side, grid[0])
    return VisionFeatures(features=features, grid=grid, received_attention=received)


def pool_received(received: torch.Tensor, side: int, tokens_per_side: int) -> torch.Tensor:
    """[B, H, side^2] per-patch attention (raster order) -> [B, H, tokens^2]: summed over each pooled
    group, in the pooled tokens' raster order (the projector pools the patch grid the same way)."""
    batch, heads, _ = received.shape
    kernel = side // tokens_per_side
    grouped = received.reshape(batch, heads, tokens_per_side, kernel, tokens_per_side, kernel)
    return grouped.sum(dim=(3, 5)).reshape(batch, heads, -1)


def project(inner, features: torch.Tensor) -> torch.Tensor:
    """The projector's linear map on normalised pooled features, in their dtype as the stock projector."""
    weight = inner.multi_modal_projector.mm_input_projection_weight
    return torch.matmul(features, weight).type_as(features)


def pooled_grid(config) -> tuple[int, int]:
    """(rows, cols) of one image's (or crop's) pooled tokens."""
    side = int(config.mm_tokens_per_image**0.5)
    return side, side
