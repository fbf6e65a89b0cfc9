"""VisPruner variant of vLLM's LLaVA-1.5 (`llava-hf` layout, CLIP tower): T embeddings per image.

Two seams of `vllm.model_executor.models.llava` (vLLM 0.32.0; private, hence the exact pin):
* the processing info's `get_num_image_tokens`: how many placeholders the prompt gets per image,
  the pruned count, so the scheduler, the KV cache and the positions only ever see T tokens;
* the model's `_process_image_input` (what `embed_multimodal` returns): the tower's features and
  signals, the method's selection, the projector on the kept tokens.
"""

from __future__ import annotations

from functools import cached_property

from transformers import CLIPVisionConfig
from vllm.model_executor.models.llava import (
    LlavaDummyInputsBuilder,
    LlavaForConditionalGeneration,
    LlavaImageEmbeddingInputs,
    LlavaMultiModalProcessor,
    LlavaProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from . import clip_tower
from .config import pruner_from_config
from .selection import asked_signals, kept_embeddings

ARCHITECTURE = "VisPrunerLlavaForConditionalGeneration"
HOST = f"{ARCHITECTURE} (a CLIP tower, before the language model)"
LLAVA_STRATEGY = "default"  # the [CLS] token dropped, as LLaVA-1.5 does


def check_config(hf_config, architecture: str = ARCHITECTURE) -> None:
    """ValueError for a LLaVA-style config (LLaVA-1.5, LLaVA-NeXT) `architecture` cannot prune (checked
    before any weight loads)."""
    if not isinstance(hf_config.vision_config, CLIPVisionConfig):
        raise ValueError(f"{architecture} supports CLIP vision towers, got {type(hf_config.vision_config).__name__}")
    if hf_config.vision_feature_select_strategy != LLAVA_STRATEGY:
        raise ValueError(
            f"{architecture} supports vision_feature_select_strategy={LLAVA_STRATEGY!r}, "
            f"got {hf_config.vision_feature_select_strategy!r}"
        )
    if not isinstance(hf_config.vision_feature_layer, int):
        raise ValueError(f"{architecture} needs a single vision_feature_layer, got {hf_config.vision_feature_layer!r}")


def checked_pruner(hf_config):
    check_config(hf_config)
    return pruner_from_config(hf_config, HOST, clip_tower.SIGNALS)


class VisPrunerLlavaProcessingInfo(LlavaProcessingInfo):
    """Placeholders per image: the method's kept count for the image's patch grid."""

    @cached_property
    def pruner(self):
        return checked_pruner(self.get_hf_config())

    def get_num_image_tokens(self, *, image_width: int, image_height: int) -> int:
        num_tokens = super().get_num_image_tokens(image_width=image_width, image_height=image_height)
        side = self.get_vision_encoder_info().get_patch_grid_length()
        return self.pruner.kept_per_image(num_tokens, (side, side))


@MULTIMODAL_REGISTRY.register_processor(
    LlavaMultiModalProcessor, info=VisPrunerLlavaProcessingInfo, dummy_inputs=LlavaDummyInputsBuilder
)
class VisPrunerLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    """vLLM's LLaVA with the pruning method of `hf_overrides["vispruner"]` between tower and projector."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        pruner = checked_pruner(vllm_config.model_config.hf_config)  # refuse bad settings before building
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        clip_tower.check_tower(self.vision_tower)
        self.pruner = pruner
        self.signals = asked_signals(pruner)

    def _process_image_input(self, image_input):
        if isinstance(image_input, LlavaImageEmbeddingInputs):
            raise ValueError(
                f"{ARCHITECTURE} prunes images from their pixels; precomputed image embeddings are not supported"
            )
        return kept_embeddings(self.pruner, self.encode_images(image_input["pixel_values"]), self.multi_modal_projector)

    def encode_images(self, pixel_values):
        """The tower's features and the method's signals for a batch of images [B, 3, H, W]."""
        return clip_tower.encode(self.vision_tower, pixel_values, self.signals)

    def kept_indices(self, pixel_values):
        """[B, T] the patch indices the method keeps for these images (for checks against other paths)."""
        return self.pruner.select(self.encode_images(pixel_values))
