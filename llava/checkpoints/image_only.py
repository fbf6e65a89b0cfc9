"""A checkpoint's processor without its video processor, for machines without torchvision.

Transformers' video processors need torchvision; processors that hold a video slot (Qwen2-VL, Qwen2.5-VL,
Qwen3-VL, LLaVA-OneVision, InternVL, SmolVLM, ...) refuse to be built without one, although their image and
text paths never touch it. `image_only_class(cls)` is a subclass of the stock processor class that leaves the
slot out of its parts (it stays None), so `from_pretrained` builds the image processor and the tokenizer (with
its chat template) as usual; giving it videos is an error. Where torchvision is installed the stock
`AutoProcessor` is used and this module plays no part.
"""

from __future__ import annotations

import inspect
from functools import cache

VIDEO_SLOT = "video_processor"


@cache  # one subclass per processor class: equal classes for equal checkpoints
def image_only_class(processor_class: type) -> type:
    """`processor_class` with its video slot left empty (same name, so saved configs name the stock class)."""

    class ImageOnly(processor_class):
        @classmethod
        def get_attributes(cls):
            return [name for name in super().get_attributes() if name != VIDEO_SLOT]

    if _slot_is_required(processor_class):
        ImageOnly = _hand_slot_none(ImageOnly)
    ImageOnly.__name__ = ImageOnly.__qualname__ = processor_class.__name__
    ImageOnly.__doc__ = f"{processor_class.__name__} without a video processor (torchvision is not installed)."
    return ImageOnly


def _slot_is_required(processor_class: type) -> bool:
    """Whether `__init__` names the video slot without a default (SmolVLM's), so it must be handed one."""
    slot = inspect.signature(processor_class.__init__).parameters.get(VIDEO_SLOT)
    return slot is not None and slot.default is inspect.Parameter.empty


def _hand_slot_none(image_only: type) -> type:
    """`image_only` built with None in the slot, and its chat template rendered by the shared
    `ProcessorMixin.apply_chat_template`: SmolVLM's override only adds video-sampling defaults, read from the
    absent video processor; for conversations without videos (the only ones it can take) both render the same."""
    from transformers.processing_utils import ProcessorMixin

    class SlotNone(image_only):
        @classmethod
        def from_args_and_dict(cls, args, processor_dict: dict, **kwargs):
            return super().from_args_and_dict(args, {**processor_dict, VIDEO_SLOT: None}, **kwargs)

        def apply_chat_template(self, conversation, *args, **kwargs):
            return ProcessorMixin.apply_chat_template(self, conversation, *args, **kwargs)

    return SlotNone


def needs_image_only(processor_class: type) -> bool:
    """Whether `processor_class` holds a video slot that cannot be filled on this machine."""
    from transformers.utils import is_torchvision_available

    return VIDEO_SLOT in processor_class.get_attributes() and not is_torchvision_available()


def processor_class_of(model_type) -> type | None:
    """The processor class AutoProcessor builds for a `config.json` model_type (None: none is registered)."""
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = PROCESSOR_MAPPING_NAMES.get(model_type) if isinstance(model_type, str) else None
    return getattr(transformers, name, None) if isinstance(name, str) else None
