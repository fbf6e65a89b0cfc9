"""How lmms-eval 0.7.3's own model for each chat-template family prompts it and generates, so that pruned
scores line up with published unpruned ones run through lmms-eval.

A family is chosen by its model class's name (nothing is imported): a family whose host joins
`llava.models.HOSTS` later needs only its row here. LLaVA-style families (LLaVA-1.5, LLaVA-NeXT, Video-LLaVA,
LLaVA-NeXT-Video) have no row: they keep lmms-eval `llava`'s conversation templates (`prompts.LlavaPrompts`).

Each row restates what the lmms-eval model named in `follows` does (`lmms_eval/models/...`; `--model NAME`
resolves to the chat class where one exists, so that is the one followed):
* the turns: an explicit system turn or the chat template's own default, media first then the task text
  (lmms-eval's default `doc_to_messages`), "<image>" removed from the text where that model removes it;
* the image processor settings it loads or calls the processor with (Qwen's pixel bounds, InternVL's tiles);
* videos: handed to the processor as videos, or as frame images (Gemma 3, Idefics), and how many frames;
* generation: the default `max_new_tokens`, and whether answers are cut at the task's `until` strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

QWEN_SYSTEM = "You are a helpful assistant."  # Qwen's, Gemma 3's lmms-eval system prompt
# lmms-eval's Qwen2.5-VL / Qwen3-VL / Gemma 3 pixel bounds: 256 and 2048 tokens of 28x28 pixels
QWEN25_MIN_PIXELS, QWEN25_MAX_PIXELS = 256 * 28 * 28, 1605632
QWEN2_MIN_PIXELS, QWEN2_MAX_PIXELS = 3136, 602112  # lmms-eval qwen2_vl's: 4 to 768 tokens of 28x28 pixels
INTERNVL_MIN_TILES, INTERNVL_MAX_TILES = 1, 12  # lmms-eval internvl_hf's min_patches / max_patches
GEMMA3_JPEG_QUALITY = 85  # lmms-eval gemma3 hands each image (and frame) over as a JPEG data URL of this quality
PARAGRAPH = "\n\n"  # a stop string lmms-eval's Qwen and Gemma models drop: it cuts multi-paragraph answers


@dataclass(frozen=True)
class ChatStyle:
    follows: str  # the lmms-eval model restated: its task options (lmms_eval_specific_kwargs) are ours
    max_new_tokens: int  # when the task sets none
    video_frames: int  # frames sampled per video
    system: str | None = None  # an explicit system turn; None: the chat template's own default
    system_as_parts: bool = False  # the system text as a list of text parts (else a plain string)
    strip_image_tag: bool = False  # "<image>" removed from the task text
    cut_at_stops: bool = False  # answers cut at the task's `until` strings (the chat classes do not)
    dropped_stops: tuple[str, ...] = ()  # `until` strings ignored before cutting
    frames_as_images: bool = False  # a video goes in as its frames, each an image
    image_tags_place_images: bool = False  # a text holding "<image>" gets no image parts: its tags place the images
    processor_call: dict = field(default_factory=dict)  # image-processor options of every processor call
    jpeg_quality: int | None = None  # images (and frames) re-encoded as JPEG of this quality before processing

    def describe(self) -> dict:
        """What the response log's keys record about the prompt and generation rules."""
        described = {"follows": self.follows, "system": self.system, "frames": self.video_frames,
                     "processor": self.processor_call, "max_new_tokens": self.max_new_tokens}  # fmt: skip
        if self.jpeg_quality is not None:  # only where set: the other families' logged keys stay as they were
            described["jpeg_quality"] = self.jpeg_quality
        return described


def _qwen_pixels(low: int, high: int) -> dict:
    return {"size": {"shortest_edge": low, "longest_edge": high}}


STYLES: dict[str, ChatStyle] = {
    # simple qwen2_vl: explicit system turn, "<image>" removed, answers not cut (`until` read, never applied)
    "Qwen2VLForConditionalGeneration": ChatStyle(
        "qwen2_vl", max_new_tokens=128, video_frames=32, system=QWEN_SYSTEM, strip_image_tag=True,
        processor_call=_qwen_pixels(QWEN2_MIN_PIXELS, QWEN2_MAX_PIXELS),
    ),
    # chat qwen2_5_vl: the user turn only (the template adds Qwen's default system turn)
    "Qwen2_5_VLForConditionalGeneration": ChatStyle(
        "qwen2_5_vl", max_new_tokens=128, video_frames=32,
        processor_call=_qwen_pixels(QWEN25_MIN_PIXELS, QWEN25_MAX_PIXELS),
    ),
    # chat qwen3_vl: an explicit system turn (Qwen3-VL's template has no default one), 32-px resize factor
    "Qwen3VLForConditionalGeneration": ChatStyle(
        "qwen3_vl", max_new_tokens=128, video_frames=32, system=QWEN_SYSTEM, system_as_parts=True,
        processor_call=_qwen_pixels(QWEN25_MIN_PIXELS, QWEN25_MAX_PIXELS),
    ),
    # chat llava_hf (lmms-eval's model for llava-hf checkpoints): the processor's template, stock processing
    "LlavaOnevisionForConditionalGeneration": ChatStyle("llava_hf", max_new_tokens=1024, video_frames=32),
    # chat internvl_hf: 1 to 12 tiles plus thumbnail, as InternVL3 was evaluated
    "InternVLForConditionalGeneration": ChatStyle(
        "internvl_hf", max_new_tokens=1024, video_frames=32,
        processor_call={"min_patches": INTERNVL_MIN_TILES, "max_patches": INTERNVL_MAX_TILES},
    ),
    # simple gemma3: explicit system turn, "<image>" removed, videos as frame images, cut at `until`, images
    # as JPEG data URLs (its min/max_pixels do not reach Gemma 3's processor, which resizes to 896 px anyway)
    "Gemma3ForConditionalGeneration": ChatStyle(
        "gemma3", max_new_tokens=128, video_frames=32, system=QWEN_SYSTEM, system_as_parts=True,
        strip_image_tag=True, cut_at_stops=True, dropped_stops=(PARAGRAPH,), frames_as_images=True,
        jpeg_quality=GEMMA3_JPEG_QUALITY,
    ),
    # no lmms-eval model for SmolVLM / Idefics3: simple idefics2's rules (its predecessor), stock image splitting;
    # "<image>" in a task's text (egothink's prompts) is the processors' image token, where idefics2 leaves it
    "SmolVLMForConditionalGeneration": ChatStyle(
        "idefics2", max_new_tokens=1024, video_frames=16, frames_as_images=True, image_tags_place_images=True
    ),
    "Idefics3ForConditionalGeneration": ChatStyle(
        "idefics2", max_new_tokens=1024, video_frames=16, frames_as_images=True, image_tags_place_images=True
    ),
}  # fmt: skip


def style_for(model) -> ChatStyle | None:
    """The chat style of `model`'s family; None for the LLaVA-style families (conversation templates)."""
    return STYLES.get(type(model).__name__)
