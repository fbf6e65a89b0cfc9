"""One batch of images' vision features -> the language model's embeddings of the tokens kept.

The method is the library's own (`llava.pruning`): its `select` or `reduce` decides, this module only
routes features to it and projects what it keeps (the projector acts per token, so projecting after
selection is exact). Methods that select on projected tokens (they list "projected") get every token
projected and the selected ones passed on, as the library's transformers path does.
"""

from __future__ import annotations

import torch

from llava.models.common import apply_method
from llava.pruning import VisionFeatures, VisionTokenPruner
from llava.pruning.base import resolve_signals

from . import clip_tower
from .config import PROJECTED


def asked_signals(pruner: VisionTokenPruner) -> frozenset[str]:
    """The encoder signals the method reads ("importance" resolved to the tower's [CLS] attention; the
    projector's output is not the encoder's)."""
    return resolve_signals(pruner.requires, clip_tower.SIGNALS) - {PROJECTED}


def kept_embeddings(pruner: VisionTokenPruner, vision: VisionFeatures, projector) -> torch.Tensor:
    """[B, T, D] projected tokens the method keeps, in the order the language model sees them."""
    projected = PROJECTED in pruner.requires
    if projected:
        vision.projected = projector(vision.features)
    kept = apply_method(pruner, vision).features
    # vLLM's CPU linear kernels need a unit stride in the last dimension; merged tokens (e.g. pooled) lack it.
    return kept if projected else projector(kept.contiguous())
