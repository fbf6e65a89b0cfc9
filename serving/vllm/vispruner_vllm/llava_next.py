"""VisPruner variant of vLLM's LLaVA-NeXT (LLaVA-1.6, `llava-hf` layout, CLIP tower).

`hf_overrides["vispruner"]["layout"]` picks the library's layout (`llava.models.llava_next`), and the
layout code is the library's own, so vLLM feeds the language model what the transformers path feeds it:
* `"paper"` (default): every image pinned to 2x2 tiles (the processor is pinned here), base + 4 tiles =
  5 crops, each pruned to `visual_token_num`: 5 T placeholders per image, no unpadding, no newlines.
* `"native"`: the stock unpad + newline layout, `visual_token_num` for the whole image (newlines not
  counted), split between the base crop and the tile map; needs a method that selects tokens.

Seams of `vllm.model_executor.models.llava_next` (vLLM 0.32.0, private): the processing info's
`get_num_image_tokens` and `get_hf_processor`, and the model's `_process_image_input`.
"""

from __future__ import annotations

from functools import cached_property

import torch
from vllm.model_executor.models.llava import LlavaDummyInputsBuilder
from vllm.model_executor.models.llava_next import (
    LlavaNextForConditionalGeneration,
    LlavaNextImageEmbeddingInputs,
    LlavaNextMultiModalProcessor,
    LlavaNextProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from llava.models import llava_next as layouts
from llava.models.common import Host, has_select

from . import clip_tower
from .config import family_setting, pruner_from_config
from .llava import check_config
from .selection import asked_signals

ARCHITECTURE = "VisPrunerLlavaNextForConditionalGeneration"
HOST = f"{ARCHITECTURE} (a CLIP tower, before the language model)"
LAYOUT_KEY = "layout"
LAYOUTS = ("paper", "native")  # the first is the default: the paper's per-crop budget
if set(LAYOUTS) != set(layouts.LAYOUTS):
    raise ImportError(f"the library's LLaVA-NeXT layouts are {layouts.LAYOUTS}; this plugin knows {LAYOUTS}")


def checked_settings(hf_config):
    """(the method, the layout) of `hf_config.vispruner`; ValueError for settings that cannot run."""
    check_config(hf_config, ARCHITECTURE)
    layout = family_setting(hf_config, ARCHITECTURE, LAYOUT_KEY, LAYOUTS)
    pruner = pruner_from_config(hf_config, HOST, clip_tower.SIGNALS, frozenset({LAYOUT_KEY}))
    if layout == "native" and not has_select(pruner):
        raise ValueError(
            f"method {pruner.name!r} merges tokens, but layout='native' places newline tokens by the kept "
            "tokens' positions; use layout='paper' or a method that selects tokens"
        )
    return pruner, layout


class VisPrunerLlavaNextProcessingInfo(LlavaNextProcessingInfo):
    """Placeholders per image: the layout's pruned count (the library's `placeholder_counts`)."""

    @cached_property
    def settings(self):
        return checked_settings(self.get_hf_config())

    def get_hf_processor(self, **kwargs: object):
        processor = super().get_hf_processor(**kwargs)
        _, layout = self.settings
        return layouts.pin_paper_resolution(processor) if layout == "paper" else processor

    def get_num_image_tokens(self, *, image_width: int, image_height: int) -> int:
        pruner, layout = self.settings
        config = self.get_hf_config()
        grid = layouts.image_grid(config, (image_height, image_width), layout)
        _, fed = layouts.placeholder_counts(config, pruner, grid, layout)
        return fed


@MULTIMODAL_REGISTRY.register_processor(
    LlavaNextMultiModalProcessor, info=VisPrunerLlavaNextProcessingInfo, dummy_inputs=LlavaDummyInputsBuilder
)
class VisPrunerLlavaNextForConditionalGeneration(LlavaNextForConditionalGeneration):
    """vLLM's LLaVA-NeXT with the pruning method and layout of `hf_overrides["vispruner"]`."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        pruner, layout = checked_settings(vllm_config.model_config.hf_config)  # refuse before building
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        clip_tower.check_tower(self.vision_tower)
        self.pruner, self.layout = pruner, layout
        self.signals = asked_signals(pruner)
        # What the library's layout functions read: the method, no tracer, no patching (vLLM owns the model).
        self.host = Host(None, pruner, None, None, HOST, clip_tower.SIGNALS)

    def _process_image_input(self, image_input) -> list[torch.Tensor]:
        if isinstance(image_input, LlavaNextImageEmbeddingInputs):
            raise ValueError(
                f"{ARCHITECTURE} prunes images from their pixels; precomputed image embeddings are not supported"
            )
        grids = [layouts.image_grid(self.config, size, self.layout) for size in image_input["image_sizes"]]
        crops = self.crops(image_input["pixel_values"], [1 + grid.rows * grid.cols for grid in grids])
        vision = self.encode_crops(crops)
        projector = self.project
        self.host.project(vision, projector)
        if self.layout == "paper":
            return layouts.paper_tokens(self.host, vision, grids, projector)
        return layouts.native_tokens(self.host, vision, grids, projector, self.image_newline)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        # vLLM's CPU linear kernels need a unit stride in the last dimension; merged tokens may lack it.
        return self.multi_modal_projector(features.contiguous())

    @staticmethod
    def crops(pixel_values, crops_per_image: list[int]) -> torch.Tensor:
        """[sum crops, 3, H, W]: each image's crops (vLLM hands a padded tensor or one tensor per image)."""
        if isinstance(pixel_values, torch.Tensor):
            return layouts.gather_crops(pixel_values, crops_per_image)
        for image, count in zip(pixel_values, crops_per_image):
            if image.shape[0] < count:
                raise ValueError(f"an image has {image.shape[0]} crops, its layout needs {count}")
        return torch.cat([image[:count] for image, count in zip(pixel_values, crops_per_image)])

    def encode_crops(self, crops: torch.Tensor):
        """The tower's features and the method's signals for a batch of crops [N, 3, H, W]."""
        return clip_tower.encode(self.vision_tower, crops, self.signals)

    def kept_indices(self, crops: torch.Tensor) -> torch.Tensor:
        """[N, T] the patch indices the method keeps in each crop (the paper layout's selection; for
        checks against other paths)."""
        return self.pruner.select(self.encode_crops(crops))
