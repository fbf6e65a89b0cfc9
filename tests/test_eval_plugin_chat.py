"""Our lmms-eval model on the chat-template families: tiny checkpoints loaded from folders, prompts equal to what
the family's own lmms-eval model builds, generation and loglikelihood through the pruned model."""

import math
from types import SimpleNamespace

import pytest
import torch

from chat_fixtures import available_families, write_chat_checkpoint
from eval.plugin.prompts import ChatPrompts
from eval.plugin.styles import QWEN2_MAX_PIXELS, QWEN2_MIN_PIXELS, QWEN25_MAX_PIXELS, QWEN25_MIN_PIXELS, STYLES
from support import shapes_image

pytest.importorskip("lmms_eval")
from lmms_eval.api.model import lmms  # noqa: E402
from lmms_eval.api.task import ConfigurableMessagesTask  # noqa: E402
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize  # noqa: E402

from eval.plugin.model import PrunedLlava  # noqa: E402

QUESTION = "What is shown?\nAnswer the question using a single word or phrase."


class FakeTask:
    def doc_to_visual(self, doc):
        return [doc["image"]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    return {family: write_chat_checkpoint(family, root / family) for family in available_families()}


@pytest.fixture(scope="module")
def docs():
    return [{"image": shapes_image(56 + 24 * i, seed=i)} for i in range(2)]


def make(folder, **kwargs):
    args = dict(pretrained=str(folder), method="vispruner", visual_token_num=2, important_ratio=0.5, device="cpu")
    return PrunedLlava(**{**args, **kwargs})


def unpruned(folder, **kwargs):
    return PrunedLlava(pretrained=str(folder), method="none", device="cpu", **kwargs)


def generation_requests(model, docs, generation=None):
    model.task_dict = {"fake": {"test": docs}}
    task = FakeTask()
    generation = generation or {"max_new_tokens": 3, "temperature": 0}
    return [SimpleNamespace(args=(QUESTION, dict(generation), task.doc_to_visual, i, "fake", "test"))
            for i in range(len(docs))]  # fmt: skip


def language_model_lengths(model) -> list[int]:
    lengths = []
    model.model.get_decoder().register_forward_pre_hook(  # the language model (SmolVLM's text_model)
        lambda module, args, kwargs: lengths.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True
    )
    return lengths


@pytest.mark.parametrize("family", available_families())
def test_generation_and_scoring_run_pruned(family, folders, docs):
    pruned, full = make(folders[family]), unpruned(folders[family])
    assert (
        isinstance(pruned.prompts, ChatPrompts)
        and pruned.task_options.follow == STYLES[type(pruned.model).__name__].follows
    )
    seen_pruned, seen_full = language_model_lengths(pruned), language_model_lengths(full)
    one_token = {"max_new_tokens": 1, "temperature": 0}
    pruned.generate_until(generation_requests(pruned, docs[:1], one_token))
    full.generate_until(generation_requests(full, docs[:1], one_token))
    assert seen_pruned[0] < seen_full[0]  # the prefill saw fewer visual tokens
    answers = pruned.generate_until(generation_requests(pruned, docs))
    assert len(answers) == len(docs) and all(isinstance(answer, str) for answer in answers)
    requests = [SimpleNamespace(args=(QUESTION, "yes", FakeTask().doc_to_visual, 0, "fake", "test")),
                SimpleNamespace(args=(QUESTION, "yes yes yes", FakeTask().doc_to_visual, 0, "fake", "test"))]  # fmt: skip
    (one, greedy), (three, _) = pruned.loglikelihood(requests)
    assert math.isfinite(one) and one < 0 and three < one and isinstance(greedy, bool)


@pytest.mark.parametrize("family", available_families())
def test_batches_answer_like_single_requests(family, folders, docs):
    single, batched = make(folders[family]), make(folders[family], batch_size=2)
    assert batched.generate_until(generation_requests(batched, docs)) == single.generate_until(
        generation_requests(single, docs)
    )


def test_a_chat_family_refuses_a_conversation_template(folders):
    with pytest.raises(ValueError, match="conv_template=vicuna_v1: Qwen2_5_VLForConditionalGeneration is prompted"):
        make(folders["qwen2_5_vl"], conv_template="vicuna_v1")


# --- prompts equal lmms-eval's ----------------------------------------------------------------------


def lmms_eval_run(model_class, processor, image, capture):
    """Run lmms-eval's own chat model class's generate_until on one doc, with the tiny processor and a model
    whose generate records its inputs (lmms-eval's loading, which needs the Hub, is skipped)."""
    lmm = model_class.__new__(model_class)
    lmms.__init__(lmm)

    def generate(**inputs):
        capture.update(inputs)
        return inputs["input_ids"]

    lmm._model = SimpleNamespace(generate=generate, dtype=torch.float32)
    lmm._image_processor = lmm.processor = processor
    lmm._tokenizer = processor.tokenizer
    lmm.batch_size_per_gpu, lmm._rank, lmm._world_size, lmm._device = 1, 0, 1, torch.device("cpu")
    lmm.accelerator = SimpleNamespace(is_main_process=False, unwrap_model=lambda model: model)
    lmm.use_cache, lmm.min_patches, lmm.max_patches, lmm.num_frames, lmm.fps = True, 1, 12, None, None
    lmm.task_dict = {"fake": {"test": [{"image": image}]}}

    def doc_to_messages(doc):  # lmms-eval's default: the doc's visuals, then its text, in one user turn
        return ConfigurableMessagesTask._build_user_turn([doc["image"]], QUESTION)

    lmm.generate_until([SimpleNamespace(args=(QUESTION, doc_to_messages, {"max_new_tokens": 2}, 0, "fake", "test"))])


@pytest.mark.parametrize(
    ("family", "lmms_eval_class"),
    [
        ("onevision", "lmms_eval.models.chat.llava_hf.LlavaHf"),
        ("internvl", "lmms_eval.models.chat.internvl_hf.InternVLHf"),
    ],
)
def test_prompt_ids_and_pixels_equal_lmms_eval_own_model(family, lmms_eval_class, folders, docs):
    import importlib

    module, name = lmms_eval_class.rsplit(".", 1)
    ours = unpruned(folders[family])
    expected = {}
    lmms_eval_run(getattr(importlib.import_module(module), name), ours.processor, docs[1]["image"], expected)
    got = ours.prompts.encode([ours.prompts.build(QUESTION, [docs[1]["image"]])])
    assert torch.equal(got["input_ids"], expected["input_ids"])
    assert torch.equal(got["pixel_values"], expected["pixel_values"].float())


@pytest.mark.parametrize(
    ("family", "low", "high"),
    [("qwen2_vl", QWEN2_MIN_PIXELS, QWEN2_MAX_PIXELS), ("qwen2_5_vl", QWEN25_MIN_PIXELS, QWEN25_MAX_PIXELS)],
)
def test_qwen_prompts_follow_lmms_eval_qwen(family, low, high, folders):
    """lmms-eval's qwen2_vl writes an explicit system turn and removes "<image>" from the text; qwen2_5_vl's chat
    class sends the user turn alone (the template's default system turn). Images are resized by lmms-eval's
    pixel bounds (28-px factor), not the checkpoint's."""
    ours = unpruned(folders[family])
    image = shapes_image(64, seed=5).resize((300, 200))
    prompt = ours.prompts.build("<image>" + QUESTION, [image])
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    if family == "qwen2_vl":
        turns = [{"role": "system", "content": "You are a helpful assistant."}, user]
    else:
        user["content"][1]["text"] = "<image>" + QUESTION  # the chat class keeps the text as the task wrote it
        turns = [user]
    assert prompt.text == ours.processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    height, width = smart_resize(200, 300, factor=28, min_pixels=low, max_pixels=high)
    grid = ours.prompts.encode([prompt])["image_grid_thw"]
    assert grid.tolist() == [[1, height // 14, width // 14]]


class RecordingProcessor:
    chat_template = "recorded"

    def apply_chat_template(self, turns, tokenize, add_generation_prompt):
        return turns


@pytest.mark.parametrize(
    ("model_class", "system"),
    [("Qwen3VLForConditionalGeneration", [{"type": "text", "text": "You are a helpful assistant."}]),
     ("Gemma3ForConditionalGeneration", [{"type": "text", "text": "You are a helpful assistant."}]),
     ("SmolVLMForConditionalGeneration", None)],
)  # fmt: skip
def test_new_families_turns_follow_their_lmms_eval_model(model_class, system, tmp_path):
    """Qwen3-VL (chat qwen3_vl) and Gemma 3 (simple gemma3) write the system turn as text parts; SmolVLM follows
    simple idefics2 (no system turn, the text's "<image>" left where the image goes). Gemma 3 and SmolVLM take a
    video's frames as images."""
    import av
    import numpy as np

    style = STYLES[model_class]
    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width = stream.height = 32
        for index in range(6):
            frame = np.full((32, 32, 3), 40 * index, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    prompts = ChatPrompts(RecordingProcessor(), style, video_frames=4)
    turns, images, videos = prompts.messages("<image>Q?", [shapes_image(40, seed=6), str(video)])
    user = turns[-1]["content"]
    assert (turns[0]["content"] if len(turns) == 2 else None) == system
    if style.image_tags_place_images:  # the text's "<image>" places the image: no part, after the frames
        assert [part["type"] for part in user] == ["image"] * 4 + ["text"] and len(images) == 5 and not videos
        assert images[-1].size == (40, 40)
    elif style.frames_as_images:
        assert [part["type"] for part in user] == ["image"] * 5 + ["text"] and len(images) == 5 and not videos
    else:
        assert [part["type"] for part in user] == ["image", "video", "text"] and len(videos) == 1
    assert user[-1]["text"] == ("Q?" if style.strip_image_tag else "<image>Q?")
