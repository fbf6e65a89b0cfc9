"""Wiring of pruning methods into each supported model family, and the public switch.

One small module per host family (`llava.py`, `llava_next.py`, `video_llava.py`, `llava_next_video.py`,
`llava_onevision.py`, `qwen2_vl.py`, `qwen3_vl.py`, `internvl.py`, `gemma3.py`) knows where that family encodes images
and videos and how its prompts hold placeholders; `apply_pruning` picks it by the model's class. Shared
pieces: `common.py` (the `Host` skeleton every family builds: signal checks, defaults, forward/generate
rewriting; `prune`), `inside.py` (in-LLM methods on any family) over `decoder.py` (the pruning layer
loop), `runs.py` (placeholder rewriting), `anyres.py` (tile geometry), `frames.py` (video budgets), and
the encoders `clip.py`, `siglip.py`, `qwen_vision.py`, `internvl_vision.py`, `gemma3_vision.py`, each
declaring the signals it provides (`SIGNALS`).
"""

from __future__ import annotations

import copyreg
import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable

import torch

from ..patching import InstancePatch
from ..pruning import create_pruner, list_methods
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
    "transformers.models.internvl.modeling_internvl.InternVLForConditionalGeneration": "internvl",
    "transformers.models.qwen3_vl.modeling_qwen3_vl.Qwen3VLForConditionalGeneration": "qwen3_vl",
    "transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe.Qwen3VLMoeForConditionalGeneration": "qwen3_vl",
    "transformers.models.gemma3.modeling_gemma3.Gemma3ForConditionalGeneration": "gemma3",
    "transformers.models.smolvlm.modeling_smolvlm.SmolVLMForConditionalGeneration": "smolvlm",
    "transformers.models.idefics3.modeling_idefics3.Idefics3ForConditionalGeneration": "smolvlm",
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

    Every argument is checked before the model is touched: a bad one raises (TypeError for an object
    that is not a model, ValueError otherwise, naming the argument, its value and what is allowed) and
    leaves the model exactly as it was, an earlier pruning with its config and trace included.

    `trace=True` records what the model really keeps: `model.pruning_trace` is then a list with one
    `llava.trace.PrunedCall` per model call that pruned (a `forward`; a `generate`, whose prefill
    prunes), each listing a `llava.trace.KeptTokens` per image, anyres part and video frame (and, for
    in-LLM methods, per pruning layer): the kept indices into that part's own token grid and, for
    VisPruner, which of them are important (the rest are diverse). Each apply starts an empty list;
    `remove_pruning` takes it away. Tracing leaves every output as it is; without it nothing is
    recorded and nothing extra runs.

    Copies, pickles and saved checkpoints:
    * `copy.deepcopy(model)` is an independent pruned model: its own weights, the same method, options
      and model options, tracing on or off as here with an empty trace (the pruner is deep-copied too,
      so `random` continues its stream from the same state); `remove_pruning` works on either alone.
      `copy.copy(model)` is refused (a shallow copy would share the patched parts). A deep copy of a
      part of a pruned model (e.g. `model.model`) is that part unpruned.
    * `pickle` / `torch.save` store the stock model plus the pruning settings, and loading re-applies
      the pruning (this package must be importable there); the trace is not stored. That works where
      the stock model pickles: transformers models do until their first forward installs its
      output-capturing hooks, which pickle cannot store (a pruned model then fails the same way).
    * `model.save_pretrained(folder)` saves the stock weights and config only: the folder loads as an
      unpruned model, and pruning is applied again after loading.

    >>> llava.apply_pruning(model, "vispruner", visual_token_num=64, trace=True)
    >>> model.generate(**inputs)
    >>> image = model.pruning_trace[-1].parts[0]     # image.kept, image.important, image.diverse, image.grid
    """
    attach = _host(model, "apply_pruning")
    if not isinstance(method, str):
        raise ValueError(
            f"method must be the name of a pruning method (one of {', '.join(list_methods())}), got {method!r}"
        )
    host_names = _host_options(attach)
    host_options = {name: options.pop(name) for name in list(options) if name in host_names}
    also = f"; {type(model).__name__} accepts {', '.join(host_names) if host_names else 'no model options'}"
    pruner = create_pruner(method, visual_token_num, also_accepted=also, **options)
    return attach_pruner(model, pruner, trace=trace, **host_options)


def attach_pruner(model, pruner: TokenPruner, *, trace: bool = False, **host_options):
    """`apply_pruning` with a pruner object already built (e.g. one outside the registry); returns the model.
    A failure leaves the model as it was, an earlier pruning included."""
    attach = _host(model, "attach_pruner")
    if not isinstance(pruner, TokenPruner):
        raise TypeError(
            f"pruner must be a llava.pruning.TokenPruner (e.g. llava.create_pruner(...)), got {type(pruner).__name__}"
        )
    if not isinstance(trace, bool):
        raise ValueError(f"trace must be True or False, got {trace!r}")
    allowed = _host_options(attach)
    unknown = sorted(set(host_options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown model option(s) {', '.join(unknown)} for {type(model).__name__}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    pruner.prepare(model.device)
    previous: InstancePatch | None = model.__dict__.get(_PATCH_ATTR)
    if previous is not None:
        previous.suspend()  # off while the new pruning attaches; back on if that fails
    patch = InstancePatch()
    tracer = Tracer(pruner.name) if trace else None
    try:
        attach(model, pruner, patch, tracer, **host_options)
        if tracer is not None:
            tracer.wrap_entry_points(model, patch)
        patch.set(model, "pruning_config", dataclasses.replace(pruner.config, host_options=dict(host_options)))
        if tracer is not None:
            patch.set(model, "pruning_trace", tracer.records)
        _patch_copying(model, patch, _Settings(pruner, trace, dict(host_options)))
        patch.set(model, _PATCH_ATTR, patch)
    except BaseException:
        patch.undo()
        if previous is not None:
            previous.resume()
        raise
    return model


def remove_pruning(model):
    """Undo `apply_pruning` (a no-op on an unpruned model), its trace included; returns the same model.
    Anything but a model of a supported class is refused (TypeError for a non-model, ValueError for an
    unsupported model class), naming the supported classes."""
    _host(model, "remove_pruning")
    patch: InstancePatch | None = model.__dict__.get(_PATCH_ATTR)
    if patch is not None:
        patch.undo()
    return model


def _supported() -> str:
    return ", ".join(sorted(name.rsplit(".", 1)[1] for name in HOSTS))


def _host(model, caller: str = "apply_pruning") -> Callable:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"{caller} takes a model (an instance of one of: {_supported()}), got {type(model).__name__} "
            f"{_short(model)}"
        )
    for cls in type(model).__mro__:
        module = HOSTS.get(f"{cls.__module__}.{cls.__qualname__}")
        if module is not None:
            return importlib.import_module(f".{module}", __name__).attach
    raise ValueError(f"pruning does not support {type(model).__name__}; supported model classes: {_supported()}")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _host_options(attach: Callable) -> list[str]:
    parameters = inspect.signature(attach).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


# --- copies and pickles of a pruned model -------------------------------------------------------------


@dataclasses.dataclass
class _Settings:
    """What a copy or an unpickled pruned model re-applies."""

    pruner: TokenPruner
    trace: bool
    host_options: dict


def _patch_copying(model, patch: InstancePatch, settings: _Settings) -> None:
    """Make `copy.deepcopy` and `pickle` of the model (both look `__reduce_ex__` up on the instance) build
    from the stock state and re-apply `settings`; a part of the model copies or pickles unpruned."""
    for obj in patch.objects():
        if obj is not model:
            patch.set(obj, "__reduce_ex__", functools.partial(_reduce_part, obj, patch))
    patch.set(model, "__reduce_ex__", functools.partial(_reduce_pruned, model, patch, settings))


def _reduce_part(obj, patch: InstancePatch, protocol: int):
    return copyreg.__newobj__, (type(obj),), patch.stock_state(obj)


def _reduce_pruned(model, patch: InstancePatch, settings: _Settings, protocol: int):
    return _pruned_shell, (type(model),), (patch.stock_state(model), settings)


def _pruned_shell(cls):
    """A bare instance whose (one-off, instance-level) `__setstate__` restores the stock state and
    re-applies the pruning: pickle and copy both look `__setstate__` up on the instance."""
    shell = cls.__new__(cls)
    shell.__dict__["__setstate__"] = functools.partial(_restore_pruned, shell)
    return shell


def _restore_pruned(model, state) -> None:
    del model.__dict__["__setstate__"]
    stock, settings = state
    model.__setstate__(stock)
    shared = [name for name, part in model.named_modules() if part is not model and _PART_MARK in part.__dict__]
    if shared:
        # a shallow copy (copy.copy) holds the original's patched parts: pruning them again would tangle both
        model.__dict__.clear()
        raise TypeError(
            "copy.copy of a pruned model would share its pruned parts with the original; use copy.deepcopy "
            "(an independent pruned model), or llava.remove_pruning(model) first"
        )
    attach_pruner(model, settings.pruner, trace=settings.trace, **settings.host_options)


_PART_MARK = "__reduce_ex__"  # set on every patched part of a pruned model (`_patch_copying`)
