"""Wiring of pruning methods into each supported model family, and the public switch.

One small module per host family (`llava.py`, `llava_next.py`, `video_llava.py`, `llava_next_video.py`,
`llava_onevision.py`, `qwen2_vl.py`) knows where that family encodes images and videos and how its
prompts hold placeholders; `apply_pruning` picks it by the model's class. Shared pieces: `common.py`
(the `Host` skeleton every family builds: signal checks, defaults, forward/generate rewriting;
`prune`), `inside.py` (in-LLM methods on any family) over `decoder.py` (the pruning layer loop),
`runs.py` (placeholder rewriting), `anyres.py` (tile geometry), `frames.py` (video budgets), and the
encoders `clip.py`, `siglip.py`, `qwen_vision.py`, each declaring the signals it provides (`SIGNALS`).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable

from ..patching import InstancePatch
from ..pruning import create_pruner
from ..pruning.base import TokenPruner
from ..trace import Tracer

# Model class (by its transformers module and name, so nothing is imported until a model is
# pruned) -> the module of this package that wires pruning into it.
HOSTS: dict[str, str] = {
    "transformers.models.llava.modeling_llava.LlavaForConditionalGeneration": "llava",
    "transformers.models.llava_next.modeling_llava_next.LlavaNextForConditionalGeneration": "llava_next",
    "transformers.models.llava_next_video.modeling_llava_next_video.LlavaNextVideoForConditionalGeneration": "llava_next_video",
    "transformers.models.llava_onevision.modeling_llava_onevision.LlavaOnevisionForConditionalGeneration": "llava_onevision",
    "transformers.models.qwen2_vl.modeling_qwen2_vl.Qwen2VLForConditionalGeneration": "qwen2_vl",
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl.Qwen2_5_VLForConditionalGeneration": "qwen2_vl",
    "transformers.models.video_llava.modeling_video_llava.VideoLlavaForConditionalGeneration": "video_llava",
}

_PATCH_ATTR = "_pruning_patch"


def apply_pruning(model, method: str = "vispruner", visual_token_num: int = 64, *, trace: bool = False, **options):
    """Prune `model`'s visual tokens with `method` from now on; returns the same model.

    Per instance and reversible (`remove_pruning`); applying again replaces the earlier settings.
    The settings are readable as `model.pruning_config`. Options are the method's own, e.g.
    `important_ratio` for "vispruner", and the model family's own (keyword-only parameters of its
    host's `attach`), e.g. `layout="paper"` for LLaVA-NeXT or `video_token_num` for video models;
    `llava.list_methods()` names the methods and each method's module documents its options and what
    `visual_token_num` means. Methods needing a signal the model cannot provide raise ValueError.

    `trace=True` records what the model really keeps: `model.pruning_trace` is then a list with one
    `llava.trace.PrunedCall` per model call that pruned (a `forward`; a `generate`, whose prefill
    prunes), each listing a `llava.trace.KeptTokens` per image, anyres part and video frame (and, for
    in-LLM methods, per pruning layer): the kept indices into that part's own token grid and, for
    VisPruner, which of them are important (the rest are diverse). Each apply starts an empty list;
    `remove_pruning` takes it away. Tracing leaves every output as it is; without it nothing is
    recorded and nothing extra runs.

    >>> llava.apply_pruning(model, "vispruner", visual_token_num=64, trace=True)
    >>> model.generate(**inputs)
    >>> image = model.pruning_trace[-1].parts[0]     # image.kept, image.important, image.diverse, image.grid
    """
    host_names = _host_options(_host(model))
    host_options = {name: options.pop(name) for name in list(options) if name in host_names}
    also = f"; {type(model).__name__} accepts {', '.join(host_names)}" if host_names else ""
    pruner = create_pruner(method, visual_token_num, also_accepted=also, **options)
    return attach_pruner(model, pruner, trace=trace, **host_options)


def attach_pruner(model, pruner: TokenPruner, *, trace: bool = False, **host_options):
    """`apply_pruning` with a pruner object already built (e.g. one outside the registry); returns the model."""
    if not isinstance(trace, bool):
        raise ValueError(f"trace must be True or False, got {trace!r}")
    attach = _host(model)
    remove_pruning(model)
    patch = InstancePatch()
    tracer = Tracer(pruner.name) if trace else None
    try:
        attach(model, pruner, patch, tracer, **host_options)
        if tracer is not None:
            tracer.wrap_entry_points(model, patch)
    except BaseException:
        patch.undo()
        raise
    patch.set(model, "pruning_config", dataclasses.replace(pruner.config, host_options=host_options))
    if tracer is not None:
        patch.set(model, "pruning_trace", tracer.records)
    patch.set(model, _PATCH_ATTR, patch)
    return model


def remove_pruning(model):
    """Undo `apply_pruning` (a no-op on an unpruned model), its trace included; returns the same model."""
    patch: InstancePatch | None = model.__dict__.get(_PATCH_ATTR)
    if patch is not None:
        patch.undo()
    return model


def _host(model) -> Callable:
    for cls in type(model).__mro__:
        module = HOSTS.get(f"{cls.__module__}.{cls.__qualname__}")
        if module is not None:
            return importlib.import_module(f".{module}", __name__).attach
    supported = ", ".join(sorted(name.rsplit(".", 1)[1] for name in HOSTS))
    raise ValueError(f"pruning does not support {type(model).__name__}; supported model classes: {supported}")


def _host_options(attach: Callable) -> list[str]:
    parameters = inspect.signature(attach).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
