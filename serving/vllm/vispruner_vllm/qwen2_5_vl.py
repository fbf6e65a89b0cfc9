"""VisPruner variant of vLLM's Qwen2.5-VL: each image's merged tokens pruned to `visual_token_num`.

As the library's transformers path (`llava.models.qwen2_vl`): importance is the mean attention each
merged token's 2x2 patches receive at the tower's last block, the features are the four pre-merger
vectors, and the kept tokens keep the M-RoPE positions they have in the unpruned prompt (text after an
image continues where it would have). Images only: videos are refused.

Seams of `vllm.model_executor.models.qwen2_5_vl` (vLLM 0.32.0, private): the processor's
`_get_prompt_updates` (the placeholder run cut to the kept count), the processing info's limits and
`get_num_image_tokens`, and the model's `embed_multimodal` and `get_mrope_input_positions`.

Positions: vLLM asks for a request's M-RoPE positions when the request arrives, before its images are
encoded. vLLM's own pruning (EVS, `recompute_mrope_positions`) fixes positions after encoding, but
vLLM 0.32 calls that only when `video_pruning_rate > 0`, and its CPU model runner never does. So
`get_mrope_input_positions` runs the tower and the selection on the request's pixels to place the kept
tokens, and the embedding pass runs them again: the vision tower runs twice per image.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import torch
from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLDummyInputsBuilder,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
    Qwen2_5_VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.video_prune.evs import compute_mrope_for_media

from llava.models.common import Host, has_select, prune
from llava.pruning import VisionFeatures
from llava.pruning.base import resolve_signals

from . import qwen_tower
from .config import pruner_from_config

ARCHITECTURE = "VisPrunerQwen2_5_VLForConditionalGeneration"
HOST = f"{ARCHITECTURE} (a Qwen2.5-VL tower with no [CLS] token, before the language model)"
IMAGE = "image"
POSITION_AXES = 3  # M-RoPE: (time, height, width)


def checked_pruner(hf_config):
    pruner = pruner_from_config(hf_config, HOST, qwen_tower.SIGNALS)
    if not has_select(pruner):
        raise ValueError(f"method {pruner.name!r} merges tokens; {ARCHITECTURE} needs kept positions for M-RoPE")
    return pruner


class VisPrunerQwen2_5_VLProcessingInfo(Qwen2_5_VLProcessingInfo):
    """Images only; an image's placeholder count is the method's kept count of its merged tokens."""

    @cached_property
    def pruner(self):
        return checked_pruner(self.get_hf_config())

    def get_supported_mm_limits(self):
        return {IMAGE: None}

    def get_num_image_tokens(self, **kwargs) -> int:
        return self.pruner.kept_per_image(super().get_num_image_tokens(**kwargs))


class VisPrunerQwen2_5_VLMultiModalProcessor(Qwen2_5_VLMultiModalProcessor):
    """The stock placeholder runs, each image's cut to the kept count."""

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs):
        pruner = self.info.pruner

        def pruned(stock_replacement):
            def replacement(item_idx: int):
                tokens = stock_replacement(item_idx)
                return tokens[: pruner.kept_per_image(len(tokens))]

            return replacement

        return [
            dataclasses.replace(update, replacement=pruned(update.replacement)) if update.modality == IMAGE else update
            for update in super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        ]


@MULTIMODAL_REGISTRY.register_processor(
    VisPrunerQwen2_5_VLMultiModalProcessor,
    info=VisPrunerQwen2_5_VLProcessingInfo,
    dummy_inputs=Qwen2_5_VLDummyInputsBuilder,
)
class VisPrunerQwen2_5_VLForConditionalGeneration(Qwen2_5_VLForConditionalGeneration):
    """vLLM's Qwen2.5-VL with the pruning method of `hf_overrides["vispruner"]` after the tower."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        pruner = checked_pruner(vllm_config.model_config.hf_config)  # refuse bad settings before building
        if vllm_config.compilation_config.compile_mm_encoder:
            raise ValueError(
                f"{ARCHITECTURE} reads the vision tower's last block in eager mode; compile_mm_encoder=True is not supported"
            )
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        if self.use_data_parallel:
            raise ValueError(f"{ARCHITECTURE} does not support mm_encoder_tp_mode='data'")
        qwen_tower.check_tower(self.visual)
        self.pruner = pruner
        self.signals = resolve_signals(pruner.requires, qwen_tower.SIGNALS) & qwen_tower.SIGNALS
        # What the library's pruning helpers read: the method, no tracer, no patching (vLLM owns the model).
        self.host = Host(None, pruner, None, None, HOST, qwen_tower.SIGNALS)

    def embed_multimodal(self, **kwargs: object):
        inputs = self._parse_and_validate_multimodal_inputs(**kwargs)
        if set(inputs) - {IMAGE}:
            raise ValueError(f"{ARCHITECTURE} prunes images; videos are not supported")
        image = inputs.get(IMAGE)
        if image is None:
            return []
        if image["type"] != "pixel_values":
            raise ValueError(
                f"{ARCHITECTURE} prunes images from their pixels; precomputed image embeddings are not supported"
            )
        tokens, _ = self.prune_images(image["pixel_values"], image["image_grid_thw"].tolist())
        return tuple(tokens)

    def prune_images(self, pixel_values: torch.Tensor, grid_thw: list[list[int]]):
        """(kept merged tokens [k, D] per image, their indices [k] ascending per image)."""
        merged = qwen_tower.encode(self.visual, pixel_values, grid_thw, self.signals)
        pieces = zip(
            merged.tokens.split(merged.counts),
            merged.features.split(merged.counts),
            merged.attention.split(merged.counts, dim=-1) if merged.attention is not None else [None] * len(grid_thw),
            merged.grids,
        )
        kept_tokens, kept_indices = [], []
        for tokens, features, attention, grid in pieces:
            signal = {} if attention is None else {"received_attention": attention[None]}
            vision = VisionFeatures(features[None], grid, **signal)
            self.host.project(vision, lambda _features, tokens=tokens: tokens[None])  # merged tokens are projected
            pruned = prune(self.pruner, vision, self.pruner.kept_per_image(tokens.shape[0]))
            indices = pruned.indices[0]
            kept_tokens.append(self.host.tokens(pruned, lambda _features, t=tokens, i=indices: t[None, i])[0])
            kept_indices.append(indices)
        return kept_tokens, kept_indices

    def kept_indices(self, pixel_values: torch.Tensor, grid_thw: list[list[int]]) -> list[torch.Tensor]:
        """The merged-token indices kept per image (for positions, and checks against other paths)."""
        return self.prune_images(pixel_values, grid_thw)[1]

    def get_mrope_input_positions(self, input_tokens, mm_features):
        """[3, N] positions of the pruned prompt: text as in the unpruned prompt, each kept token at its own
        (t, h, w) there; and the offset decoding continues from (see the module doc for why the tower runs)."""
        merge = self.visual.spatial_merge_size
        parts, start, next_position = [], 0, 0
        for feature in sorted(mm_features, key=lambda f: f.mm_position.offset):
            if feature.modality != IMAGE:
                raise ValueError(f"{ARCHITECTURE} prunes images; {feature.modality} inputs are not supported")
            grid = feature.data["image_grid_thw"].data
            with torch.inference_mode():
                (kept,) = self.kept_indices(feature.data["pixel_values"].data, [grid.tolist()])
            text = feature.mm_position.offset - start
            parts.append(torch.arange(text).expand(POSITION_AXES, -1) + next_position)
            image = compute_mrope_for_media(grid, merge)[:, :POSITION_AXES].T + next_position + text  # unpruned
            parts.append(image[:, kept.cpu()])
            next_position = int(image.max()) + 1
            start = feature.mm_position.offset + kept.numel()
        parts.append(torch.arange(len(input_tokens) - start).expand(POSITION_AXES, -1) + next_position)
        positions = torch.cat(parts, dim=1)
        return positions, int(positions.max()) + 1 - len(input_tokens) if positions.numel() else 0
