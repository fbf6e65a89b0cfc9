"""What a pruned model really kept: one record per pruned model call, with `apply_pruning(..., trace=True)`.

>>> llava.apply_pruning(model, "vispruner", visual_token_num=64, trace=True)
>>> model.generate(**inputs, max_new_tokens=8)
>>> (call,) = model.pruning_trace        # the generate call pruned once (in its prefill)
>>> image = call.parts[0]                # KeptTokens(source="image", item=0, part="image", ...)
>>> image.kept, image.important, image.diverse

The hosts record the indices at the moment they keep the tokens (no second vision-tower pass, no
re-seeded generator), so a picture drawn from a record shows the tokens behind the answer it
accompanies. A `forward`, a `generate` (its prefill) or a direct call of the model's
`get_image_features` / `get_video_features` that prunes adds one `PrunedCall`; calls that prune
nothing (decoding steps, text-only prompts) add none.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .patching import InstancePatch

# (attribute path from the model, method name): the ways into a pruned model; each opens a call
# record, and calls nested inside one (generate -> forward -> get_image_features) share it.
ENTRY_POINTS = (
    ((), "generate"),
    ((), "forward"),
    (("model",), "forward"),
    (("model",), "get_image_features"),
    (("model",), "get_video_features"),
)


@dataclass(frozen=True, eq=False)
class KeptTokens:
    """The visual tokens one image, anyres part or video frame kept in one pruned model call.

    source:    "image" or "video".
    item:      which image (video) of the call, counted over the batch in the order the model encodes them.
    part:      "image" (a whole image; also a one-crop anyres image), "base" (an anyres image's base crop),
               "tiles" (its unpadded tile map, pruned as one map: LLaVA-NeXT's native layout, OneVision),
               "tile" (one tile crop: LLaVA-NeXT's paper layout), "frame" (a video frame) or, for in-LLM
               methods, which rank an item's placeholders as one run, "video" (a whole video).
    index:     the tile's (raster order over the tile grid) or frame's number; 0 for the other parts.
    grid:      (rows, cols) of the token grid `kept` indexes, raster order: the crop's or frame's own patch
               grid (after the pooling a video family applies), the tile map's grid for "tiles", the merged
               grid for Qwen2-VL; for in-LLM methods the item's placeholders ((1, count) where the family
               has no fixed grid for them, e.g. anyres images with their newline tokens).
    kept:      [k] long, ascending: the kept tokens; None for methods that merge tokens (no kept indices).
               Over a video with a total budget (`video_token_num`), each frame lists its own share.
    important: [k'] long, ascending: the kept tokens chosen for importance (VisPruner's [CLS]-attention
               tokens; the others are its diverse tokens); None for methods without such a split, and when
               the budget covered every token (nothing was selected).
    layer:     None for pruning before the language model; for in-LLM methods (FastV, PDrop, SparseVLM) the
               language-model layer from which on only `kept` remain (tokens SparseVLM merges from dropped
               ones are not listed).
    The index tensors stay on the model's device as the model made them (recording waits for nothing).
    """

    source: str
    item: int
    part: str
    index: int
    grid: tuple[int, int]
    kept: torch.Tensor | None
    important: torch.Tensor | None = None
    layer: int | None = None

    @property
    def num_tokens(self) -> int:
        """Tokens of the grid before pruning."""
        return self.grid[0] * self.grid[1]

    @property
    def diverse(self) -> torch.Tensor | None:
        """The kept tokens not chosen for importance (VisPruner's diverse tokens); None without a split."""
        if self.kept is None or self.important is None:
            return None
        return self.kept[~torch.isin(self.kept, self.important)]


@dataclass(eq=False)
class PrunedCall:
    """Everything one pruned model call kept, one `KeptTokens` per image part, frame and pruning layer."""

    method: str
    parts: list[KeptTokens] = field(default_factory=list)

    def matching(self, **values) -> list[KeptTokens]:
        """The parts whose fields equal `values`, e.g. `call.matching(source="video", item=0)`."""
        names = {f.name for f in fields(KeptTokens)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"KeptTokens has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(names))}")
        return [part for part in self.parts if all(getattr(part, k) == v for k, v in values.items())]


class Tracer:
    """Collects the records of one applied pruning; the hosts call it where they prune (only when tracing)."""

    def __init__(self, method: str):
        self.method = method
        self.records: list[PrunedCall] = []
        self._open: PrunedCall | None = None

    @contextmanager
    def call(self) -> Iterator[None]:
        """One model call: what is recorded inside goes into one `PrunedCall`, kept if the call pruned and
        returned (a call that raised leaves no record)."""
        if self._open is not None:  # nested in an outer call: the outer one records
            yield
            return
        self._open = PrunedCall(self.method)
        try:
            yield
            if self._open.parts:
                self.records.append(self._open)
        finally:
            self._open = None

    def wrap_entry_points(self, model, patch: InstancePatch) -> None:
        """Make each way into `model` (ENTRY_POINTS) open a call record, on this instance only."""
        for path, name in ENTRY_POINTS:
            owner = functools.reduce(getattr, path, model)
            if hasattr(owner, name):
                patch.set(owner, name, self._traced(getattr(owner, name)))

    def _traced(self, function: Callable) -> Callable:
        @functools.wraps(function)
        def traced(*args, **kwargs):
            with self.call():
                return function(*args, **kwargs)

        return traced

    def add(
        self, source: str, item: int, part: str, grid, kept, important=None, *, index: int = 0, layer: int | None = None
    ) -> None:
        record = KeptTokens(source, item, part, index, tuple(grid), kept, important, layer)
        if self._open is not None:
            self._open.parts.append(record)
        else:  # pruning reached without an entry point (e.g. the language model called on its own)
            self.records.append(PrunedCall(self.method, [record]))

    def add_rows(self, source: str, grid, labels: list[tuple[str, int, int]], indices, important) -> None:
        """One record per row of a batch pruned at once: `labels[row]` = (part, item, index);
        indices [B, k] / important [B, k'] as the method returned them (None when it has none)."""
        for row, (part, item, index) in enumerate(labels):
            self.add(source, item, part, grid, _row(indices, row), _row(important, row), index=index)

    def add_video(self, item: int, frame_grid, num_frames: int, indices, important) -> None:
        """A video pruned as one tall map of its frames (indices [K] into F x rows x cols): one record per frame."""
        per_frame = frame_grid[0] * frame_grid[1]

        def in_frame(selected, start):
            if selected is None:
                return None
            return selected[(selected >= start) & (selected < start + per_frame)] - start

        for frame in range(num_frames):
            start = frame * per_frame
            kept, chosen = in_frame(indices, start), in_frame(important, start)
            self.add("video", item, "frame", frame_grid, kept, chosen, index=frame)


def ranks_within_image(image: torch.Tensor) -> torch.Tensor:
    """[B, L] each visual token's position among its own image's tokens of the row (-1 for text):
    its index into the image's patch grid, as the placeholders hold an image's tokens in raster order."""
    ranks = torch.full_like(image, -1)
    for number in range(int(image.amax()) + 1):
        mine = image == number
        ranks = torch.where(mine, mine.long().cumsum(dim=1) - 1, ranks)
    return ranks


def _row(batch: torch.Tensor | None, row: int) -> torch.Tensor | None:
    return None if batch is None else batch[row]
