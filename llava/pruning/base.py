"""What every pruning method shares: the inputs it sees, the argument checks, and its settings.

Two kinds of methods exist:
* `VisionTokenPruner`: reduces an image's tokens before the language model sees them (inside the
  vision encoder or between encoder and projector); the language model receives T tokens per image.
* `LanguageModelPruner`: drops visual tokens from the hidden states between language-model layers;
  the language model receives all tokens and keeps fewer after its pruning layer(s).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from .sequence import AttentionRows, Sequence


def check_token_num(visual_token_num: Any, name: str = "visual_token_num") -> int:
    """Return `visual_token_num` as an int, or raise ValueError saying what is allowed."""
    if isinstance(visual_token_num, bool) or not isinstance(visual_token_num, numbers.Integral):
        raise ValueError(f"{name} must be a positive integer (>= 1), got {visual_token_num!r}")
    if visual_token_num <= 0:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {visual_token_num}")
    return int(visual_token_num)


def check_count(value: Any, name: str, minimum: int = 0) -> int:
    """Return `value` as an int >= `minimum`, or raise ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_ratio(value: Any, name: str) -> float:
    """Return `value` as a float in [0, 1], or raise ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def check_layers(value: Any, name: str) -> tuple[int, ...]:
    """Return `value` (an int or a sequence of ints) as a strictly increasing tuple of ints >= 0."""
    layers = (value,) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    try:
        layers = tuple(layers)
    except TypeError:
        raise ValueError(f"{name} must be a layer index or a list of them, got {value!r}") from None
    if not layers or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0 for v in layers):
        raise ValueError(f"{name} must hold layer indices >= 0, got {value!r}")
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ValueError(f"{name} must be strictly increasing, got {value!r}")
    return tuple(int(v) for v in layers)


# "importance": what a method ranking tokens by attention asks for. An encoder with a [CLS] token
# serves its [CLS] -> patch attention ("cls_attention"); one without serves the mean attention each
# token receives from all tokens of the layer ("received_attention"), the VisPruner author's answer
# for such encoders (VisPruner issue #1). Either is [B, H, N]; the first one an encoder has is used.
IMPORTANCE = "importance"
IMPORTANCE_SIGNALS = ("cls_attention", "received_attention")


def resolve_signals(requires: frozenset[str] | set[str], provided: frozenset[str] | set[str]) -> frozenset[str]:
    """`requires` with "importance" replaced by the importance signal of an encoder that `provided`
    lists (left as it is when the encoder has none, so the check names it)."""
    if IMPORTANCE not in requires:
        return frozenset(requires)
    served = next((name for name in IMPORTANCE_SIGNALS if name in provided), IMPORTANCE)
    return frozenset(requires) - {IMPORTANCE} | {served}


def check_signals(pruner: TokenPruner, provided: set[str] | frozenset[str], host: str, note: str = "") -> None:
    """Raise ValueError when `host` cannot give `pruner` a signal it needs (e.g. [CLS] attention)."""
    missing = sorted(resolve_signals(pruner.requires, provided) - set(provided))
    if missing:
        named = [f"{IMPORTANCE} ({' or '.join(IMPORTANCE_SIGNALS)})" if m == IMPORTANCE else m for m in missing]
        raise ValueError(
            f"method {pruner.name!r} needs {', '.join(named)}, which {host} does not provide "
            f"(it provides: {', '.join(sorted(provided)) or 'nothing'}){note}"
        )


def gather_tokens(tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Pick `indices` [B, T] out of `tokens` [B, N, C] -> [B, T, C]."""
    return tokens.gather(1, indices.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


@dataclass
class LayerProjections:
    """One encoder layer's query for the [CLS] token and keys for all tokens, as its projections output them.

    cls_query: [B, C] q_proj output of the [CLS] token.
    keys:      [B, 1 + N, C] k_proj output, [CLS] first, then the patches in raster order.
    num_heads: how many heads the C channels split into.
    """

    cls_query: torch.Tensor
    keys: torch.Tensor
    num_heads: int


@dataclass
class VisionFeatures:
    """What a host model hands a vision-side pruner, for one batch of images.

    features:         [B, N, C] patch features of the feature layer, before the projector ([CLS] excluded).
                      For methods that merge inside the encoder ("token_merging") these are the merged tokens.
    grid:             (rows, cols) of the patch grid, rows * cols == N (before any merging), in raster order.
    cls_attention:    [B, H, N] [CLS] -> patch attention of the feature layer ("cls_attention").
    cls_token:        [B, C] the [CLS] token's feature at the feature layer ("cls_token").
    projections:      the feature layer's [CLS] query and keys ("projections").
    next_projections: the [CLS] query and keys of the encoder layer after the feature layer, computed from
                      the feature layer's output ("next_projections"); that layer itself does not run.
    projected:        [B, N, D] the patch features after the projector, i.e. the language model's input
                      embeddings for these tokens ("projected").
    received_attention: [B, H, N] for encoders without [CLS] (SigLIP, Qwen-VL): the mean attention each
                      token receives from all tokens of the feature layer ("received_attention").
    Fields a method does not list in `requires` are None; a method asking for "importance" reads
    `importance`, whichever of the two attention signals the encoder has.
    """

    features: torch.Tensor
    grid: tuple[int, int]
    cls_attention: torch.Tensor | None = None
    cls_token: torch.Tensor | None = None
    projections: LayerProjections | None = None
    next_projections: LayerProjections | None = None
    projected: torch.Tensor | None = None
    received_attention: torch.Tensor | None = None

    @property
    def importance_signal(self) -> str | None:
        """The name of the attention signal these features carry ("cls_attention" or "received_attention")."""
        return next((name for name in IMPORTANCE_SIGNALS if getattr(self, name) is not None), None)

    @property
    def importance(self) -> torch.Tensor | None:
        """[B, H, N] the attention tokens are ranked by: [CLS] attention, else the received attention."""
        signal = self.importance_signal
        return None if signal is None else getattr(self, signal)

    def take(self, rows: slice) -> VisionFeatures:
        """The same signals for `rows` of the batch (e.g. one image's crops)."""

        def part(value):
            if isinstance(value, LayerProjections):
                return LayerProjections(value.cls_query[rows], value.keys[rows], value.num_heads)
            return None if value is None else value[rows]

        return VisionFeatures(
            self.features[rows],
            self.grid,
            *(
                part(getattr(self, name))
                for name in ("cls_attention", "cls_token", "projections", "next_projections", "projected")
            ),
            received_attention=part(self.received_attention),
        )


@dataclass(frozen=True)
class PruningConfig:
    """The settings a pruned model runs with; `model.pruning_config` after `apply_pruning`."""

    method: str
    visual_token_num: int
    options: dict[str, Any] = field(default_factory=dict)
    host_options: dict[str, Any] = field(default_factory=dict)  # the model family's own, e.g. layout


class TokenPruner:
    """Name, budget, signals and settings shared by every method.

    Subclasses set `name`, list the signals they need in `requires` (vision signals such as
    "importance" or "cls_token", or "question" for methods that read the text after the image), and check
    their options in `__init__`, raising ValueError naming the option.
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, visual_token_num: int):
        self.visual_token_num = check_token_num(visual_token_num)

    @property
    def options(self) -> dict[str, Any]:
        """The method's own settings besides the budget."""
        return {}

    @property
    def config(self) -> PruningConfig:
        return PruningConfig(self.name, self.visual_token_num, self.options)

    def prepare(self, device: torch.device) -> None:
        """Get ready to run on `device` (e.g. build a kernel), or raise saying why it cannot. Called when
        the pruner is attached to a model, before the model is changed."""

    def __repr__(self) -> str:
        settings = ", ".join(
            f"{k}={v!r}" for k, v in {"visual_token_num": self.visual_token_num, **self.options}.items()
        )
        return f"{type(self).__name__}({settings})"


class VisionTokenPruner(TokenPruner):
    """A method that reduces the visual tokens before the language model sees them.

    Subclasses implement `select` (kept indices, raster order) or, for methods that merge tokens,
    `reduce` (the reduced features). Methods needing "projected" are handed the projected tokens and
    must implement `select`: the host then passes the selected projected tokens on unchanged.
    """

    def kept_per_image(self, num_tokens: int, grid: tuple[int, int] | None = None) -> int:
        """How many tokens reach the language model for an image of `num_tokens` tokens on `grid`."""
        return min(self.visual_token_num, num_tokens)

    def with_budget(self, visual_token_num: int) -> VisionTokenPruner:
        """The same method and options with another budget, for the parts of an image (crops, frames)
        that share one total. Methods with state across calls (a random stream) override this to carry it."""
        if visual_token_num == self.visual_token_num:
            return self
        return type(self)(visual_token_num, **self.options)

    def select(self, vision: VisionFeatures) -> torch.Tensor:
        """Kept token indices [B, T], ascending."""
        raise NotImplementedError

    def select_split(self, vision: VisionFeatures) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`select`'s kept indices, and which of them were kept for importance ([B, T'] ascending) where the
        method keeps tokens for two reasons (VisPruner: important and diverse); None for the others.
        The kept indices are `select`'s, bit for bit (tracing reads the split, it changes nothing)."""
        return self.select(vision), None

    def reduce(self, vision: VisionFeatures) -> torch.Tensor:
        """Reduced pre-projector features [B, T, C] in the order the language model will see them."""
        return gather_tokens(vision.features, self.select(vision))

    def selection_flops(self, num_tokens: int, width: int, num_heads: int) -> int:
        """Matrix-multiply FLOPs (2 per multiply-add) of this method's own scoring, selection and merging
        for one image of `num_tokens` patch features with `width` channels (the projected width for
        methods needing "projected") from a layer with `num_heads` heads. The signals the host computes
        (e.g. the [CLS] row) are not included; sorting, gathering and elementwise work are not counted,
        as FLOP counters do not count them either. 0 for methods that multiply no matrices."""
        return 0


class LanguageModelPruner(TokenPruner):
    """A method that drops visual tokens from the language model's hidden states between layers.

    The host runs the language model's layers itself. Before each layer index in `stages(...)` it
    calls `reduce(stage, sequence, attention, state)`, which returns the shortened sequence; the
    later layers (and their KV cache) only see that. `attention` gives softmax attention rows of
    the layer named by `attention_layer(...)`: the layer just run (its own projections are reused)
    or the layer about to run (its projections are computed for the rows asked for).
    `visual_token_num` is the number of visual tokens kept per image after the (first) pruning
    layer; each method documents its exact meaning.
    """

    requires = frozenset({"question"})

    def stages(self) -> tuple[int, ...]:
        """Layer indices (ascending) before which `reduce` runs, one per stage."""
        raise NotImplementedError

    def attention_layer(self, stage_layer: int) -> int:
        """The layer whose attention the stage before `stage_layer` reads: stage_layer - 1 or stage_layer."""
        return stage_layer - 1

    def check_depth(self, num_layers: int) -> None:
        """Raise ValueError naming the option when a stage does not fit a model of `num_layers` layers."""
        for layer in self.stages():
            if not 1 <= layer < num_layers:
                raise ValueError(
                    f"{self.name}: pruning before layer {layer} does not fit a language model of {num_layers} "
                    f"layers (allowed: 1..{num_layers - 1}); set {self._layer_option()}"
                )

    def _layer_option(self) -> str:
        return "layers"

    def check_item_tokens(self, num_tokens: int, item: str) -> None:
        """Raise ValueError when the settings cannot prune `item` (e.g. "images of LLaVA-1.5"), each of
        `num_tokens` visual tokens (for families where every such item has that many; checked when applied)."""

    def start(self, sequence: Sequence) -> Any:
        """Check the prefill input and compute per-call state from it (e.g. text raters).

        Every in-LLM method reads the question, so a prompt whose last token is an image token
        raises ValueError."""
        from .sequence import last_real_index

        last = last_real_index(sequence.mask)[:, None]
        if bool(sequence.visual.gather(1, last).any()):
            raise ValueError(
                f"{self.name} needs the question after the image (it reads the text that follows it), "
                "but a prompt ends with an image token"
            )
        return None

    def kept_visual(self, stage: int, visual: int, images: int) -> int:
        """Visual tokens of one prompt after stage `stage`, from `visual` before it, for a prompt of
        `images` images (the token schedule the layer loop will follow)."""
        raise NotImplementedError

    def attention_queries(self, text_after_image: int) -> int:
        """Attention rows one prompt reads at each stage (the last prompt token by default), for a
        prompt with `text_after_image` text tokens after its last image."""
        return 1

    def selection_flops(self, visual: int, text_after_image: int, hidden: int) -> int:
        """Matrix-multiply FLOPs of one prompt's own scoring work besides the attention rows (which the
        host computes), for `visual` visual tokens of `hidden` channels entering the language model."""
        return 0

    def reduce(self, stage: int, sequence: Sequence, attention: AttentionRows, state: Any) -> Sequence:
        raise NotImplementedError
