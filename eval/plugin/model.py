"""lmms-eval model `vispruner`: a checkpoint of any supported family with any registered pruning method.

    python -m lmms_eval --model vispruner \\
        --model_args pretrained=liuhaotian/llava-v1.5-7b,method=vispruner,visual_token_num=64,important_ratio=0.5 \\
        --tasks mme --batch_size 8 --output_path results/...

For the LLaVA-style families prompts are built exactly as lmms-eval's built-in `llava` model builds them
(image placeholders joined by spaces in front of the task text, then the conversation template, then LLaVA's
piece-wise tokenization) and the task options are those lmms-eval keys for `llava` (see `task_options.py`).
The chat-template families (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision, InternVL, Gemma 3, SmolVLM,
Idefics3) are prompted as lmms-eval's own model for the family prompts them, with its task options
(`styles.py`, `prompts.py`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache

import torch
from accelerate import Accelerator
from lmms_eval.api.model import lmms
from lmms_eval.models.model_utils.progress import make_progress
from loguru import logger
from transformers import LlavaNextForConditionalGeneration

import llava
from llava.conversation import get_template
from llava.models.llava_next import pin_paper_resolution

from .arguments import check_before_loading, check_device, positive_int
from .prompts import ChatPrompts, LlavaPrompts
from .response_log import ResponseLog, answer_key
from .styles import style_for
from .task_options import TaskOptions

LLAVA_TEMPLATE = "vicuna_v1"  # lmms-eval llava's default conversation template
LLAVA_VIDEO_FRAMES = 8  # Video-LLaVA's
DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float32": torch.float32, "fp32": torch.float32}  # fmt: skip
SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_p", "num_beams", "do_sample")


class PrunedLlava(lmms):
    """Model arguments (`--model_args k=v,...`); every key not listed is passed on to `llava.apply_pruning`: an
    option of `method` (`important_ratio`, `layers`, `schedule`, ...) or of the model family (`layout`,
    `video_token_num`, `video_split`, `frame_cls`), and an unknown one is rejected by name.

    pretrained         original LLaVA checkpoint or transformers-format one of any supported family (local
                       folder or Hub id; `llava.load_pretrained_model`)
    method             a registered pruning method (`llava.list_methods()`), or "none" for the full model
    visual_token_num   visual tokens kept per image (per crop for LLaVA-NeXT's paper layout with vision-side
                       methods; per image or video for in-LLM methods; per tile for InternVL; per encoded
                       image, pan-and-scan crops included, for Gemma 3; per tile, the global image and each
                       video frame included, for SmolVLM / Idefics3): what the family's host in llava/models
                       documents
    conv_template      LLaVA-style families: vicuna_v1 (default, as lmms-eval's llava), llava_v1 or plain;
                       chat-template families use their processor's chat template and refuse it
    dtype              auto (float16 on GPU, float32 on CPU), float16, bfloat16 or float32
    device             lmms-eval's --device (default cuda); the CPU, with a warning, when CUDA is absent
    attn_implementation  sdpa (default), eager or flash_attention_2
    paper_mode         LLaVA-NeXT as the paper ran it: 672x672 grid, 5 crops each pruned to T, no unpadding/newlines
    task_options_as    whose task options to use (default: the family's lmms-eval model, "llava" for the LLaVA
                       families, e.g. "qwen2_5_vl"; empty: lmms-eval's choice for our name)
    response_log       folder for per-sample answers; a rerun resumes from it
    vision_tower       local copy of the CLIP tower an original checkpoint names (offline use)
    video_frames       frames sampled per video (default 8, as Video-LLaVA; chat families: their lmms-eval
                       model's, 32, or 16 for SmolVLM)
    """

    is_simple = True

    def __init__(
        self,
        pretrained: str = "liuhaotian/llava-v1.5-7b",
        method: str = "vispruner",
        visual_token_num: int | None = None,
        conv_template: str | None = None,
        dtype: str = "auto",
        attn_implementation: str = "sdpa",
        paper_mode: bool = False,
        task_options_as: str | None = None,
        response_log: str | None = None,
        vision_tower: str | None = None,
        video_frames: int | None = None,
        device: str = "cuda",
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        **method_options,
    ) -> None:
        super().__init__()
        self.accelerator = Accelerator()
        self._rank, self._world_size = self.accelerator.process_index, self.accelerator.num_processes
        local_rank = self.accelerator.local_process_index if self._world_size > 1 else None
        self._device = resolve_device(device, local_rank)
        self.batch_size_per_gpu = positive_int(batch_size, "batch_size")
        template = get_template(conv_template or LLAVA_TEMPLATE)
        video_frames = None if video_frames is None else positive_int(video_frames, "video_frames")
        check_before_loading(pretrained, method, visual_token_num, method_options, response_log)

        torch_dtype = _dtype(dtype, self._device)
        self.model, self.processor = llava.load_pretrained_model(
            str(pretrained), dtype=torch_dtype, device_map=str(self._device), attn_implementation=attn_implementation,
            vision_tower=vision_tower,
        )  # fmt: skip
        layout = _paper_layout(self.model, self.processor) if paper_mode else {}
        self.prompts = _prompts(self.model, self.processor, template, conv_template, video_frames)
        task_options_as = self.prompts.follows if task_options_as is None else task_options_as
        self.task_options = TaskOptions(task_options_as)
        if method == "none":
            if visual_token_num is not None or method_options:
                raise ValueError("method=none keeps every visual token: drop visual_token_num and method options")
            if layout:  # the paper's unpruned baseline: the same layout, every token of every crop kept
                vision = self.model.config.vision_config
                llava.apply_pruning(self.model, "vispruner", (vision.image_size // vision.patch_size) ** 2, **layout)
        else:
            if visual_token_num is None:
                raise ValueError(f"visual_token_num is required with method={method} (e.g. visual_token_num=64)")
            llava.apply_pruning(
                self.model, method=method, visual_token_num=visual_token_num, **method_options, **layout
            )
        self.settings = {
            "pretrained": str(pretrained), "method": method, "visual_token_num": visual_token_num,
            "options": method_options, "conv_template": _template_name(self.prompts, conv_template), "dtype": str(torch_dtype),
            "attn_implementation": attn_implementation, "paper_mode": bool(paper_mode),
            "task_options_as": task_options_as, "video_frames": self.prompts.video_frames,
        }  # fmt: skip
        if isinstance(self.prompts, ChatPrompts):  # the chat rules are part of what an answer depends on
            self.settings["chat_style"] = self.prompts.style.describe()
        self.log = ResponseLog(response_log, self._rank) if response_log else None
        self._warned: set[str] = set()

    # --- lmms interface ------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self) -> torch.device:
        return self._device

    def generate_until(self, requests) -> list[str]:
        prepared = [self._prepare(request) for request in requests]
        answers: list[str | None] = [self.log.get(p["key"]) if self.log else None for p in prepared]
        todo = [i for i, answer in enumerate(answers) if answer is None]
        if len(todo) < len(prepared):
            logger.info(
                f"vispruner: {len(prepared) - len(todo)} of {len(prepared)} answers taken from {self.log.folder}"
            )
        groups = defaultdict(list)  # batches share generation options; longest prompts first
        for i in sorted(todo, key=lambda i: -len(prepared[i]["context"])):
            groups[json.dumps(prepared[i]["generation"], sort_keys=True, default=str)].append(i)
        # lmms-eval's progress: a tqdm bar on a terminal, a log line now and then in a log file
        with make_progress(total=len(todo), disable=self.rank != 0, desc="vispruner generating") as progress:
            for members in groups.values():
                for start in range(0, len(members), self.batch_size):
                    chunk = members[start : start + self.batch_size]
                    texts = self._generate([prepared[i] for i in chunk])
                    for i, text in zip(chunk, texts):
                        answers[i] = text
                    if self.log:
                        self.log.add([_log_entry(prepared[i], answers[i]) for i in chunk])
                    progress.update(len(chunk))
        return answers

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        """Summed log-probability of each continuation (with the template's end separator, as lmms-eval's
        llava scores it; chat families: the assistant turn with its end-of-turn tokens) and whether greedy
        decoding would produce it."""
        results = []
        with make_progress(total=len(requests), disable=self.rank != 0, desc="vispruner scoring") as progress:
            for request in requests:
                context, target, doc_to_visual, doc_id, task, split = request.args
                doc = self.task_dict[task][split][doc_id]
                continuation = target if isinstance(target, str) else target(doc)
                prompt, full = self.prompts.build_scored(context, continuation, doc_to_visual(doc))
                context_length = self.prompts.encode([prompt])["input_ids"].shape[1]
                inputs = self._inputs([prompt], [full])
                scored = inputs["input_ids"].shape[1] - context_length
                with torch.inference_mode():
                    # read from the end: pruning shortens the image part of the sequence, never the tail
                    logits = self.model(**inputs).logits[0, -scored - 1 : -1].float()
                targets = inputs["input_ids"][0, -scored:]
                logprobs = torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]
                results.append((float(logprobs.sum()), bool(torch.equal(logits.argmax(-1), targets))))
                progress.update(1)
        return results

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("multi-round generation is not supported by the vispruner model")

    # --- internals -----------------------------------------------------------------------------

    def _prepare(self, request) -> dict:
        """What a request asks, without loading its images yet (a batch loads its own)."""
        context, generation, doc_to_visual, doc_id, task, split = request.args
        docs = self.task_dict[task][split]  # rows are read when needed: they decode their images
        generation = dict(generation or {})
        keyed = self.task_options.keyed(doc_to_visual)
        if keyed is not None:
            context = self.task_options.prompt(keyed, context, docs[doc_id])
            generation.update(keyed.generation)
            doc_to_visual = keyed.source.doc_to_visual
        generation = self._generation_options(generation)
        # the prompt follows from the context, the doc's visuals and the template (in the settings)
        key = answer_key(self.settings, task, doc_id, context, generation)
        return {"key": key, "task": task, "doc_id": doc_id, "context": context, "generation": generation,
                "visuals": lambda: doc_to_visual(docs[doc_id])}  # fmt: skip

    def _generation_options(self, generation: dict) -> dict:
        until = generation.pop("until", None) or [self.processor.tokenizer.eos_token]
        until = [until] if isinstance(until, str) else list(until)
        if not self.prompts.cut_at_stops:  # the family's lmms-eval model does not cut at them
            until = []
        until = [stop for stop in until if stop not in self.prompts.dropped_stops]
        aspect = generation.pop("image_aspect_ratio", None)
        if aspect is not None and "image_aspect_ratio" not in self.model.config.__dict__ and aspect != "original":
            self._warn_once(f"image_aspect_ratio={aspect} requested by a task is not applied to this checkpoint")
        options = {key: generation.pop(key) for key in SAMPLING_KEYS if key in generation}
        for key in sorted(generation):
            self._warn_once(f"generation option {key}={generation[key]!r} is ignored")
        temperature = float(options.get("temperature") or 0)
        sampled = {"temperature": temperature, "top_p": options.get("top_p")} if temperature > 0 else {}
        return {
            "max_new_tokens": int(options.get("max_new_tokens", self.prompts.max_new_tokens)),
            "num_beams": int(options.get("num_beams", 1)),
            "do_sample": temperature > 0,  # as lmms-eval llava: sampling follows the temperature
            **sampled,
            "until": [stop for stop in until if stop],
        }

    def _inputs(self, prompts, texts=None) -> dict:
        inputs = self.prompts.encode(prompts, texts).to(self.device)
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.model.dtype)
        return dict(inputs)

    def _generate(self, batch: list[dict]) -> list[str]:
        generation = dict(batch[0]["generation"])
        until = generation.pop("until")
        prompts = [self.prompts.build(p["context"], p["visuals"]()) for p in batch]
        for p, prompt in zip(batch, prompts):
            p["prompt"] = prompt.text
        inputs = self._inputs(prompts)
        tokenizer = self.processor.tokenizer
        with torch.inference_mode():
            output = self.model.generate(**inputs, **generation, pad_token_id=tokenizer.pad_token_id, use_cache=True)
        texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return [_cut(text, until).strip() for text in texts]

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning(f"vispruner: {message}")


def _prompts(model, processor, template, conv_template: str | None, video_frames: int | None):
    """The family's prompt rules: a chat style where the family has one, lmms-eval llava's otherwise."""
    style = style_for(model)
    if style is None:
        return LlavaPrompts(processor, template, int(video_frames or LLAVA_VIDEO_FRAMES))
    if conv_template is not None:
        raise ValueError(
            f"conv_template={conv_template}: {type(model).__name__} is prompted through its processor's chat "
            f"template (as lmms-eval's {style.follows}); drop conv_template"
        )
    if getattr(processor, "chat_template", None) is None:
        raise ValueError(f"{type(model).__name__}: the checkpoint's processor has no chat template to prompt with")
    return ChatPrompts(processor, style, int(video_frames or style.video_frames))


def _template_name(prompts, conv_template: str | None) -> str | None:
    """The conversation template as the response log's keys always named it (None: a chat template)."""
    return (conv_template or LLAVA_TEMPLATE) if isinstance(prompts, LlavaPrompts) else None


def _cut(text: str, stops: list[str]) -> str:
    for stop in stops:
        text = text.split(stop)[0]
    return text


def _log_entry(prepared: dict, answer: str) -> dict:
    return {"key": prepared["key"], "task": prepared["task"], "doc_id": prepared["doc_id"], "prompt": prepared["prompt"],
            "generation": prepared["generation"], "response": answer}  # fmt: skip


def resolve_device(requested: str, local_rank: int | None = None) -> torch.device:
    """The device to run on: `requested` (its `local_rank`-th GPU in a multi-process run), or the CPU
    when it names CUDA and this machine has none: lmms-eval's --device defaults to cuda, which would
    otherwise stop a CPU-only user with "Torch not compiled with CUDA enabled"."""
    device = torch.device(check_device(requested))
    if device.type == "cuda" and local_rank is not None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda" and not torch.cuda.is_available():
        _warn_cpu_fallback(str(device))
        return torch.device("cpu")
    return device


@cache  # once per process, however many models a sweep builds
def _warn_cpu_fallback(requested: str) -> None:
    logger.warning(f"vispruner: device {requested} requested but CUDA is not available; running on cpu "
                   "(pass --device cpu to silence this)")  # fmt: skip


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; allowed: auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def _paper_layout(model, processor) -> dict:
    """LLaVA-NeXT as VisPruner's paper ran it: the anyres grid pinned to 672x672 (2x2 tiles + base,
    5 x 576 tokens), no unpadding and no newline tokens, each crop pruned to `visual_token_num`.
    Returns the host option that selects that layout in `llava.apply_pruning`."""
    if not isinstance(model, LlavaNextForConditionalGeneration):
        raise ValueError(
            f"paper_mode applies to LLaVA-NeXT (anyres) checkpoints; this one loads as {type(model).__name__}"
        )
    pin_paper_resolution(processor)
    return {"layout": "paper"}
