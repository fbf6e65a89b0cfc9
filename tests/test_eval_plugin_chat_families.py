"""Our lmms-eval model on Gemma 3, SmolVLM and Idefics3 beyond the shared chat-family tests
(`test_eval_plugin_chat.py`): Gemma 3's prompts and pixels equal lmms-eval gemma3's, a BOS the template writes is
not added again, a task text's "<image>" places SmolVLM / Idefics3 images (simple idefics2's rule), and the
image-only SmolVLM processor (no torchvision) loads and renders its chat template."""

from types import SimpleNamespace

import pytest
import torch

from chat_fixtures import ADDS_BOS, available_families, write_chat_checkpoint
from eval.plugin.styles import GEMMA3_JPEG_QUALITY, QWEN_SYSTEM
from support import shapes_image

pytest.importorskip("lmms_eval")
from lmms_eval.api.model import lmms  # noqa: E402

from eval.plugin.model import PrunedLlava  # noqa: E402

QUESTION = "What is shown?\nAnswer the question using a single word or phrase."
EGOTHINK_STYLE = "Keep your answer short. USER: <image>\n" + QUESTION  # a task prompt holding "<image>"
LMMS_EVAL_GEMMA3_PIXELS = 256 * 28 * 28, 1605632  # lmms-eval gemma3's min_pixels / max_pixels defaults
LMMS_EVAL_GEMMA3_FRAMES = 32


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat_families")
    wanted = [family for family in ("gemma3", "idefics3", "smolvlm") if family in available_families()]
    return {family: write_chat_checkpoint(family, root / family) for family in wanted}


def unpruned(folder):
    return PrunedLlava(pretrained=str(folder), method="none", device="cpu")


def lmms_eval_gemma3(processor, context: str, image, capture: dict) -> None:
    """lmms-eval's own simple gemma3 generate_until on one doc, with the tiny processor and a model whose
    generate records its inputs (its loading, which needs the Hub, is skipped)."""
    from lmms_eval.models.simple.gemma3 import Gemma3

    lmm = Gemma3.__new__(Gemma3)
    lmms.__init__(lmm)

    def generate(**inputs):
        capture.update(inputs)
        return inputs["input_ids"]

    lmm._model = SimpleNamespace(generate=generate, dtype=torch.float32, device=torch.device("cpu"))
    lmm.processor, lmm._tokenizer = processor, processor.tokenizer
    lmm.batch_size_per_gpu, lmm._rank, lmm._world_size = 1, 0, 1
    lmm._device, lmm.device_map, lmm.use_cache = torch.device("cpu"), "cpu", True
    lmm.system_prompt, lmm.reasoning_prompt, lmm.interleave_visuals = QWEN_SYSTEM, None, False
    (lmm.min_pixels, lmm.max_pixels), lmm.max_num_frames = LMMS_EVAL_GEMMA3_PIXELS, LMMS_EVAL_GEMMA3_FRAMES
    lmm.task_dict = {"fake": {"test": [{"image": image}]}}
    request = (context, {"max_new_tokens": 2}, lambda doc: [doc["image"]], 0, "fake", "test")
    lmm.generate_until([SimpleNamespace(args=request)])


def test_gemma3_prompt_ids_and_pixels_equal_lmms_eval_gemma3(folders):
    """Same ids where lmms-eval attends (it pads to a multiple of 8) and the same pixels once both are in its
    bfloat16: its system turn, "<image>" removed, one BOS, images as JPEG data URLs of quality 85."""
    ours = unpruned(folders["gemma3"])
    image = shapes_image(72, seed=4).resize((90, 60))
    expected = {}
    lmms_eval_gemma3(ours.processor, EGOTHINK_STYLE, image, expected)
    got = ours.prompts.encode([ours.prompts.build(EGOTHINK_STYLE, [image])])
    attended = expected["attention_mask"][0].bool()
    assert torch.equal(got["input_ids"][0], expected["input_ids"][0][attended])
    assert torch.equal(got["pixel_values"].to(expected["pixel_values"].dtype), expected["pixel_values"])
    assert ours.settings["chat_style"]["jpeg_quality"] == GEMMA3_JPEG_QUALITY


@pytest.mark.parametrize("family", sorted(ADDS_BOS))
def test_a_bos_the_template_writes_is_not_added_again(family, folders):
    ours = unpruned(folders[family])
    tokenizer = ours.processor.tokenizer
    assert tokenizer("x").input_ids[0] == tokenizer.bos_token_id  # the tokenizer adds one by itself
    prompt, full = ours.prompts.build_scored(QUESTION, "yes", [shapes_image(40, seed=1)])
    for encoded in (ours.prompts.encode([prompt]), ours.prompts.encode([prompt], [full])):
        ids = encoded["input_ids"][0].tolist()
        assert prompt.text.startswith(tokenizer.bos_token) and ids[0] == tokenizer.bos_token_id != ids[1]


@pytest.mark.parametrize("family", ["idefics3", "smolvlm"])
def test_an_image_tag_in_the_task_text_places_the_image(family, folders):
    """egothink-style prompts ("USER: <image>\\n..."): simple idefics2 adds no image part then; the tag is the
    processors' image token, so the image is expanded once, where the tag is."""
    if family not in folders:
        pytest.skip(f"{family}'s processor needs num2words")
    ours = unpruned(folders[family])
    image = shapes_image(48, seed=2)
    tagged, plain = ours.prompts.build(EGOTHINK_STYLE, [image]), ours.prompts.build(QUESTION, [image])
    assert tagged.text.count("<image>") == plain.text.count("<image>") == 1
    assert tagged.text.index("<image>") > tagged.text.index("USER:")
    image_id = ours.model.config.image_token_id
    count = [int((ours.prompts.encode([p])["input_ids"] == image_id).sum()) for p in (tagged, plain)]
    assert count[0] == count[1] > 0
    docs = [{"image": image}]
    ours.task_dict = {"fake": {"test": docs}}
    request = (EGOTHINK_STYLE, {"max_new_tokens": 2, "temperature": 0}, lambda doc: [doc["image"]], 0, "fake", "test")
    assert isinstance(ours.generate_until([SimpleNamespace(args=request)])[0], str)


def test_image_only_smolvlm_processor_renders_its_template(folders):
    """Without torchvision SmolVLM's processor has no video processor (its __init__ requires the slot, and its own
    apply_chat_template reads video defaults from it): the image-only one still loads and renders."""
    if "smolvlm" not in folders:
        pytest.skip("SmolVLM's processor needs num2words")
    import llava

    _, processor = llava.load_pretrained_model(str(folders["smolvlm"]))
    turns = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    assert getattr(processor, "video_processor", None) is None
    assert text == processor.tokenizer.bos_token + "User:<image>" + QUESTION + "<end_of_utterance>\nAssistant:"
