"""`llava.support_matrix()` tells the truth: "runs" cells run, refused cells raise exactly their reason,
and README.md shows the matrix `python -m llava.support` prints."""

import copy
import re
import subprocess
import sys

import pytest
import torch

import llava
from family_helpers import generate, onevision_processor, random_image
from llava.models import HOSTS
from llava.models.llava_next import pin_paper_resolution
from llava.support import BUDGET, FAMILIES, RUNS, build_family, cell_options, class_name, to_markdown
from support import LONG_PROMPT, PROMPT, REPO, shapes_image
from test_trace import NEXT_PROMPTS, NEXT_SIZES, qwen_inputs
from test_video_models import FRAMES, PATCHES, video_batch

CLASSES = [class_name(path) for path in FAMILIES]


@pytest.fixture(scope="module")
def matrix():
    return llava.support_matrix()


# Each family's batch of two prompts, left padded, built the way its own tests build them.


def llava_inputs(built, **_):
    _, processor = built
    processor.tokenizer.padding_side = "left"
    images = [shapes_image(336, seed) for seed in range(2)]
    return dict(processor(text=[PROMPT, LONG_PROMPT], images=images, return_tensors="pt", padding=True))


def llava_next_inputs(built, layout="native"):
    _, processor = built
    processor = copy.deepcopy(processor)
    if layout == "paper":
        pin_paper_resolution(processor)
    processor.tokenizer.padding_side = "left"
    images = [random_image(w, h, seed) for seed, (w, h) in enumerate(NEXT_SIZES)]
    return dict(processor(text=NEXT_PROMPTS, images=images, return_tensors="pt", padding=True))


def video_llava_inputs(built, **_):
    _, image_processor, tokenizer = built
    return video_batch(image_processor, tokenizer, PATCHES + 1, FRAMES, with_image=True)  # [CLS] leads each frame


def llava_next_video_inputs(built, **_):  # videos only: the image layout does not matter
    _, image_processor, tokenizer = built
    return video_batch(image_processor, tokenizer, PATCHES // 4, FRAMES)  # 2x2-pooled frames


def onevision_inputs(built, **_):
    _, image_processor, tokenizer = built
    tokenizer.padding_side = "left"
    processor = onevision_processor(image_processor, tokenizer, num_image_tokens=PATCHES)
    images = [random_image(100, 40, 1), random_image(60, 90, 2)]
    return dict(processor(text=NEXT_PROMPTS, images=images, return_tensors="pt", padding=True))


def qwen2_vl_inputs(built, **_):
    return qwen_inputs(*built)


def internvl_inputs(built, **_):
    from test_internvl import internvl_batch

    return internvl_batch(*built)


def qwen3_vl_inputs(built, **_):
    from test_qwen3_vl import assets, prompts

    return prompts(assets(built))


def gemma3_inputs(built, **_):
    from test_gemma3 import gemma3_batch

    return gemma3_batch(built[1])


def smolvlm_inputs(built, **_):  # a wide and a tall image: 4 tiles and the global image each
    from test_smolvlm import smolvlm_batch

    return smolvlm_batch(*built, sizes=[[(400, 100)], [(100, 400)]])


INPUTS = {
    "LlavaForConditionalGeneration": llava_inputs,
    "LlavaNextForConditionalGeneration": llava_next_inputs,
    "VideoLlavaForConditionalGeneration": video_llava_inputs,
    "LlavaNextVideoForConditionalGeneration": llava_next_video_inputs,
    "LlavaOnevisionForConditionalGeneration": onevision_inputs,
    "Qwen2VLForConditionalGeneration": qwen2_vl_inputs,
    "Qwen2_5_VLForConditionalGeneration": qwen2_vl_inputs,
    "InternVLForConditionalGeneration": internvl_inputs,
    "Qwen3VLForConditionalGeneration": qwen3_vl_inputs,
    "Qwen3VLMoeForConditionalGeneration": qwen3_vl_inputs,
    "Gemma3ForConditionalGeneration": gemma3_inputs,
    "SmolVLMForConditionalGeneration": smolvlm_inputs,
    "Idefics3ForConditionalGeneration": smolvlm_inputs,
}


def test_the_matrix_covers_every_method_and_every_host_class(matrix):
    assert sorted(FAMILIES) == sorted(HOSTS)
    assert sorted(matrix) == llava.list_methods()
    assert all(list(cells) == CLASSES for cells in matrix.values())
    assert all(cell for cells in matrix.values() for cell in cells.values())
    assert matrix["vispruner"] == dict.fromkeys(CLASSES, RUNS)


@pytest.mark.parametrize("name", CLASSES)
def test_every_cell_is_what_apply_pruning_does_on_that_family(matrix, name):
    built = build_family(name)
    model = built[0]
    for method, cells in matrix.items():
        options = cell_options(name, cells[name])
        if options is None:
            with pytest.raises(ValueError) as error:
                llava.apply_pruning(model, method, BUDGET)
            llava.remove_pruning(model)
            assert str(error.value) == cells[name], (method, name)
            continue
        inputs = INPUTS[name](built, **options)
        mask = inputs["attention_mask"]
        assert mask.shape[0] == 2 and mask[:, -1].all() and not mask.all()  # two prompts, left padded
        llava.apply_pruning(model, method, BUDGET, trace=True, **options)
        try:
            with torch.no_grad():
                logits = model(**inputs).logits
            tokens = generate(model, inputs, steps=2)
            trace = model.pruning_trace
        finally:
            llava.remove_pruning(model)
        assert torch.isfinite(logits).all(), (method, name)
        assert tokens.shape == (2, inputs["input_ids"].shape[1] + 2)
        assert len(trace) == 2 and all(call.parts for call in trace), (method, name)  # the forward, the prefill
        for call in trace:
            for part in call.parts:
                rows, cols = part.grid
                # merging methods (pool, tome) list no kept indices; every selecting method does
                if part.kept is not None:
                    # in-LLM methods let a prompt's items compete for their slots: one may keep none
                    assert (part.layer is None) <= len(part.kept) <= rows * cols, (method, name, part)
            assert_kept_as_documented(call, name, (method, name))


def assert_kept_as_documented(call, name, label):
    """Vision-side selections keep exactly the documented count: BUDGET per image, crop (paper layout) and
    frame, shared by an anyres image's base crop and tile map (native layout) and, on Qwen2-VL, by a
    video's frames; or everything when the part holds fewer tokens."""
    items = {}
    for part in call.parts:
        if part.layer is None and part.kept is not None:
            items.setdefault((part.source, part.item), []).append(part)
    for parts in items.values():
        shared = any(p.part == "tiles" for p in parts) or (name.startswith("Qwen") and parts[0].source == "video")
        groups = [parts] if shared else [[p] for p in parts]
        for group in groups:
            expected = min(BUDGET, sum(p.num_tokens for p in group))
            assert sum(len(p.kept) for p in group) == expected, (*label, group)


def support_section(path):
    return re.search(r"^## Support matrix\n(.*?)^## ", path.read_text(), re.S | re.M).group(1)


def test_the_docs_show_the_current_matrix(matrix):
    """README shows the table, docs/methods.md the table with every refusal's reason."""
    assert to_markdown(matrix, reasons_listed=False).strip() in support_section(REPO / "README.md")
    assert to_markdown(matrix).strip() in support_section(REPO / "docs" / "methods.md")


def test_the_command_prints_the_matrix(matrix):
    printed = subprocess.run(
        [sys.executable, "-m", "llava.support"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert printed == to_markdown(matrix)
