"""Prompts as lmms-eval's own model for the family writes them: a task's text and visuals in, a prompt out.

`LlavaPrompts`: lmms-eval `llava`'s rule for the LLaVA-style families (placeholders joined by spaces in front
of the text, a conversation template, LLaVA's piece-wise tokenization). `ChatPrompts`: the chat-template
families, in the style of `styles.py` (turns, processor settings, videos).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from llava.prompting import IMAGE, VIDEO, encode_batch

from .media import sample_frames, split_visuals
from .styles import ChatStyle

LLAVA_MAX_NEW_TOKENS = 1024  # lmms-eval llava's default


@dataclass
class Prompt:
    text: str  # the whole prompt, chat template applied (placeholders not yet expanded)
    images: list = field(default_factory=list)  # PIL images, in prompt order
    videos: list = field(default_factory=list)  # [F, H, W, 3] uint8 frames per video


class LlavaPrompts:
    """lmms-eval `llava`'s prompts through a conversation template (llava.conversation)."""

    follows = "llava"
    max_new_tokens = LLAVA_MAX_NEW_TOKENS
    cut_at_stops = True
    dropped_stops: tuple[str, ...] = ()

    def __init__(self, processor, template, video_frames: int):
        self.processor, self.template, self.video_frames = processor, template, video_frames

    def _question(self, context: str, visuals):
        """Placeholders joined by spaces, then a newline, unless the text has its own."""
        images, videos = split_visuals(visuals)
        placeholders = [IMAGE] * len(images) + [VIDEO] * len(videos)
        if placeholders and IMAGE not in context and VIDEO not in context:
            context = " ".join(placeholders) + "\n" + context
        return context, images, [sample_frames(path, self.video_frames) for path in videos]

    def build(self, context: str, visuals) -> Prompt:
        question, images, videos = self._question(context, visuals)
        return Prompt(self.template.single_turn(question), images, videos)

    def build_scored(self, context: str, continuation: str, visuals) -> tuple[Prompt, str]:
        """The prompt and the prompt followed by `continuation` with the template's end separator, as
        lmms-eval's llava scores it."""
        question, images, videos = self._question(context, visuals)
        roles = self.template.roles
        full = self.template.prompt([(roles[0], question), (roles[1], continuation)])
        return Prompt(self.template.single_turn(question), images, videos), full

    def encode(self, prompts: list[Prompt], texts: list[str] | None = None):
        texts = [p.text for p in prompts] if texts is None else texts
        return encode_batch(self.processor, texts, [p.images for p in prompts], [p.videos for p in prompts])


class ChatPrompts:
    """The family's chat template, applied by its processor to the turns its lmms-eval model writes."""

    def __init__(self, processor, style: ChatStyle, video_frames: int):
        self.processor, self.style, self.video_frames = processor, style, video_frames
        self.follows, self.max_new_tokens = style.follows, style.max_new_tokens
        self.cut_at_stops, self.dropped_stops = style.cut_at_stops, style.dropped_stops

    def messages(self, context: str, visuals) -> tuple[list[dict], list, list]:
        """(turns, images, videos): media first in the task's order, then the text (lmms-eval's default
        doc_to_messages); the system turn where the followed model writes one. Where the text's "<image>" tags
        place the images (simple idefics2), the images get no parts and follow the frames (the tags' order)."""
        images, videos, parts, tagged = [], [], [], []
        tags_place_images = self.style.image_tags_place_images and IMAGE in context
        for kind, item in _media(visuals):
            if kind == "image" and tags_place_images:
                tagged.append(self._as_sent(item))
                continue
            if kind == "image":
                images.append(self._as_sent(item))
                parts.append({"type": "image"})
                continue
            frames = sample_frames(item, self.video_frames)
            if self.style.frames_as_images:  # each frame an image of its own (lmms-eval gemma3, idefics2)
                images += [self._as_sent(_frame_image(frame)) for frame in frames]
                parts += [{"type": "image"}] * len(frames)
            else:
                videos.append(frames)
                parts.append({"type": "video"})
        images += tagged
        if self.style.strip_image_tag:
            context = context.replace(IMAGE, "")
        turns = [{"role": "user", "content": [*parts, {"type": "text", "text": context}]}]
        if self.style.system is not None:
            system = [{"type": "text", "text": self.style.system}] if self.style.system_as_parts else self.style.system
            turns.insert(0, {"role": "system", "content": system})
        return turns, images, videos

    def _as_sent(self, image):
        """`image` as the followed model hands it to the processor: JPEG-encoded where it sends data URLs."""
        if self.style.jpeg_quality is None:
            return image
        from PIL import Image

        encoded = io.BytesIO()
        image.convert("RGB").save(encoded, format="JPEG", quality=self.style.jpeg_quality)
        return Image.open(encoded).convert("RGB")

    def _template(self, turns: list[dict], generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation_prompt)

    def build(self, context: str, visuals) -> Prompt:
        turns, images, videos = self.messages(context, visuals)
        return Prompt(self._template(turns, True), images, videos)

    def build_scored(self, context: str, continuation: str, visuals) -> tuple[Prompt, str]:
        """The prompt and the conversation with `continuation` as the assistant's turn (its end-of-turn
        tokens included), as lmms-eval's llava_hf scores chat-template models."""
        turns, images, videos = self.messages(context, visuals)
        prompt = Prompt(self._template(turns, True), images, videos)
        answer = {"role": "assistant", "content": [{"type": "text", "text": continuation}]}
        full = self._template([*turns, answer], False)
        if not full.startswith(prompt.text):
            raise ValueError(
                f"loglikelihood: {type(self.processor).__name__}'s chat template writes an answer turn that does "
                "not extend the generation prompt, so the continuation cannot be scored alone"
            )
        return prompt, full

    def encode(self, prompts: list[Prompt], texts: list[str] | None = None):
        texts = [p.text for p in prompts] if texts is None else texts
        images = [p.images for p in prompts]
        videos = [video for p in prompts for video in p.videos]
        if videos and getattr(self.processor, "video_processor", None) is None:
            raise ValueError(
                f"{type(self.processor).__name__} has no video processor (transformers' video processors need "
                "torchvision): install torchvision to evaluate videos with this family"
            )
        options = dict(self.style.processor_call) if any(images) else {}
        bos = self.processor.tokenizer.bos_token
        if bos is not None and all(text.startswith(bos) for text in texts):
            # the template wrote the BOS (Gemma 3, Idefics3): the tokenizer must not add another, as
            # transformers' own `apply_chat_template(tokenize=True)` (lmms-eval gemma3's path) decides
            options["add_special_tokens"] = False
        return self.processor(
            text=texts, images=images if any(images) else None, videos=videos or None,
            padding=True, return_tensors="pt", **options,
        )  # fmt: skip


def _media(visuals):
    """("image", PIL image) / ("video", path) in the task's order."""
    for visual in visuals or []:
        images, videos = split_visuals([visual])
        yield ("image", images[0]) if images else ("video", videos[0])


def _frame_image(frame):
    from PIL import Image

    return Image.fromarray(frame)
