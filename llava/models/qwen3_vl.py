"""Pruning for `Qwen3VLForConditionalGeneration` and `Qwen3VLMoeForConditionalGeneration`, per instance.

Written for Qwen/Qwen3-VL-2B-Instruct and Qwen/Qwen3-VL-8B-Instruct-style configs (the MoE checkpoints,
e.g. Qwen/Qwen3-VL-30B-A3B-Instruct, share every seam used here); no real checkpoint was tried.

Qwen3-VL is Qwen2-VL's layout with three changes, and the Qwen2-VL host (`qwen2_vl.py`) serves it:

* the tower (patch 16, 2x2 merge, temporal patch 2, no [CLS]) is read by `qwen_vision.py` as Qwen2-VL's:
  importance is the mean attention each patch receives in the last block (the merger's input), summed
  over each 2x2 merge group, computed beside SDPA from that block's `qkv`;
* DeepStack: the outputs of blocks `deepstack_visual_indexes` are merged by mergers of their own and
  added by the language model to the visual tokens' hidden states after its first layers. Vision-side
  methods keep every level's features at the same indices as the merged tokens (the language model
  then adds them at the kept tokens, `visual_pos_masks` being the pruned prompt's placeholders);
  in-LLM methods leave them whole and the pruning layer loop (`decoder.py`) adds each level at the
  visual tokens a layer still holds, so FastV's, PDrop's and SparseVLM's layers may come before, among
  or after the DeepStack layers;
* videos are written frame by frame, a timestamp before each frame's run of placeholders, and each
  frame's M-RoPE grid starts after that text (interleaved M-RoPE in the language model).

Budget: `visual_token_num` merged tokens per image, and per video in total over its frames (its frames
stacked as one map, as the Qwen2-VL host does; a frame may keep none, leaving its timestamp and an
empty vision_start/vision_end pair). In-LLM methods: per image and per video (the runs of a video's
frames form one item). Kept tokens keep their stock M-RoPE positions (see `qwen2_vl.py`).
"""

from __future__ import annotations

from ..patching import InstancePatch
from ..pruning.base import TokenPruner
from ..trace import Tracer
from .qwen2_vl import Family, attach_family

HOST = "Qwen3-VL"
QWEN3 = Family(HOST, frame_runs=True)


def attach(model, pruner: TokenPruner, patch: InstancePatch, tracer: Tracer | None = None) -> None:
    attach_family(QWEN3, model, pruner, patch, tracer)
