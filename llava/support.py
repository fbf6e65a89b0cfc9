"""Which pruning method runs on which model class, found by asking `apply_pruning` itself.

`support_matrix()` calls `llava.apply_pruning` with every registered method, its default options and
`BUDGET` visual tokens on the tiny random-weight model of every class in `llava.models.HOSTS`
(`llava.testing`), keeps "runs" or the `ValueError` message it raised, and removes the pruning again.
No rule is restated here: the matrix is whatever the hosts and methods check.

`BUDGET` = 64 is the smallest budget every method accepts with its default options (SparseVLM's
published schedules start at 64). The tiny models are shaped so that the family, not the tiny size,
decides each cell: LLaVA-1.5 at its real 336-px / 14-px grid (576 tokens per image) with
LLaVA-1.5-7B's depths at tiny widths, 24 CLIP layers (ToMe can merge 576 down to 64) and 32 language
model layers (PDrop's and SparseVLM's default layers fit); the other families at their `llava.testing`
defaults with 32 language-model layers too, whose parts may hold fewer than 64 tokens (those are then
kept whole).

    python -m llava.support          # the matrix as a Markdown table with numbered reasons
"""

from __future__ import annotations

import argparse

BUDGET = 64
RUNS = "runs"
LAYERS = {"text_layers": 32}  # LLaVA-1.5-7B's, Vicuna-7B's and Qwen2-7B's depth (28) all fit PDrop's 8/16/24
PAPER_LAYOUT = {"layout": "paper"}

# Model class (as in HOSTS) -> (column label, builder of its tiny model in llava.testing, its kwargs).
FAMILIES: dict[str, tuple[str, str, dict]] = {
    "transformers.models.llava.modeling_llava.LlavaForConditionalGeneration": (
        "LLaVA-1.5",
        "build_tiny_llava",
        {"image_size": 336, "patch_size": 14, "vision_layers": 24, "text_layers": 32},
    ),
    "transformers.models.llava_next.modeling_llava_next.LlavaNextForConditionalGeneration": (
        "LLaVA-NeXT",
        "build_tiny_llava_next",
        LAYERS,
    ),
    "transformers.models.video_llava.modeling_video_llava.VideoLlavaForConditionalGeneration": (
        "Video-LLaVA",
        "build_tiny_video_llava",
        LAYERS,
    ),
    "transformers.models.llava_next_video.modeling_llava_next_video.LlavaNextVideoForConditionalGeneration": (
        "LLaVA-NeXT-Video",
        "build_tiny_llava_next_video",
        LAYERS,
    ),
    "transformers.models.llava_onevision.modeling_llava_onevision.LlavaOnevisionForConditionalGeneration": (
        "LLaVA-OneVision",
        "build_tiny_llava_onevision",
        LAYERS,
    ),
    "transformers.models.qwen2_vl.modeling_qwen2_vl.Qwen2VLForConditionalGeneration": (
        "Qwen2-VL",
        "build_tiny_qwen2_vl",
        {"version": "2", **LAYERS},
    ),
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl.Qwen2_5_VLForConditionalGeneration": (
        "Qwen2.5-VL",
        "build_tiny_qwen2_vl",
        {"version": "2.5", **LAYERS},
    ),
    "transformers.models.internvl.modeling_internvl.InternVLForConditionalGeneration": (
        "InternVL",
        "build_tiny_internvl",
        LAYERS,
    ),
    "transformers.models.qwen3_vl.modeling_qwen3_vl.Qwen3VLForConditionalGeneration": (
        "Qwen3-VL",
        "build_tiny_qwen3_vl",
        LAYERS,
    ),
    "transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe.Qwen3VLMoeForConditionalGeneration": (
        "Qwen3-VL-MoE",
        "build_tiny_qwen3_vl",
        {"moe": True, **LAYERS},
    ),
    "transformers.models.gemma3.modeling_gemma3.Gemma3ForConditionalGeneration": (
        "Gemma 3",
        "build_tiny_gemma3",
        LAYERS,
    ),
    "transformers.models.smolvlm.modeling_smolvlm.SmolVLMForConditionalGeneration": (
        "SmolVLM",
        "build_tiny_smolvlm",
        LAYERS,
    ),
    "transformers.models.idefics3.modeling_idefics3.Idefics3ForConditionalGeneration": (
        "Idefics3",
        "build_tiny_idefics3",
        LAYERS,
    ),
}


# Model class name -> host options tried, in turn, for a method the defaults refuse.
ALTERNATIVES: dict[str, list[dict]] = {
    "LlavaNextForConditionalGeneration": [PAPER_LAYOUT],
    "LlavaNextVideoForConditionalGeneration": [PAPER_LAYOUT],
}


def runs_with(options: dict) -> str:
    """The cell of a method that runs with these host options."""
    settings = ", ".join(f"{name}={value!r}" for name, value in options.items())
    return f"{RUNS} with {settings}" if options else RUNS


def cell_options(name: str, cell: str) -> dict | None:
    """The host options a "runs ..." cell of model class `name` runs with; None for a refused cell."""
    for options in [{}, *ALTERNATIVES.get(name, [])]:
        if cell == runs_with(options):
            return options
    return None


def class_name(path: str) -> str:
    return path.rsplit(".", 1)[1]


def build_family(name: str):
    """The tiny model the matrix checks for model class `name` (e.g. "LlavaForConditionalGeneration"),
    with what its builder returns besides (processor, or image processor and tokenizer)."""
    from . import testing

    (path,) = [p for p in FAMILIES if class_name(p) == name]
    _, builder, kwargs = FAMILIES[path]
    built = getattr(testing, builder)(**kwargs)
    if type(built[0]).__name__ != name:
        raise AssertionError(f"{builder} built {type(built[0]).__name__}, not {name}")
    return built


def support_matrix() -> dict[str, dict[str, str]]:
    """{method: {model class name: "runs", "runs with <host options>" or the reason apply_pruning refuses
    it}}, for every registered method and every class in `llava.models.HOSTS`, at `BUDGET` tokens with
    the method's defaults (the family's `ALTERNATIVES` tried when its defaults refuse)."""
    from .models import HOSTS, apply_pruning, remove_pruning
    from .pruning import list_methods

    missing = set(HOSTS) ^ set(FAMILIES)
    if missing:
        raise AssertionError(f"llava.support.FAMILIES and llava.models.HOSTS differ in {sorted(missing)}")
    matrix: dict[str, dict[str, str]] = {method: {} for method in list_methods()}
    for path in FAMILIES:  # HOSTS' classes, in the order of the table's columns
        name = class_name(path)
        model = build_family(name)[0]
        for method in matrix:
            cell = None
            for options in [{}, *ALTERNATIVES.get(name, [])]:
                try:
                    apply_pruning(model, method, BUDGET, **options)
                    cell = runs_with(options)
                    break
                except ValueError as error:
                    cell = cell or str(error)  # the defaults' reason
                finally:
                    remove_pruning(model)
            matrix[method][name] = cell
    return matrix


def to_markdown(matrix: dict[str, dict[str, str]], reasons_listed: bool = True) -> str:
    """The matrix as a Markdown table ("runs", or "–" with the number of its reason) and, with
    `reasons_listed`, the numbered reasons under it."""
    import pandas as pd

    labels = {class_name(path): label for path, (label, _, _) in FAMILIES.items()}
    reasons: list[str] = []
    rows = {}
    for method, cells in matrix.items():
        row = {}
        for name, cell in cells.items():
            if cell_options(name, cell) is None:
                if cell not in reasons:
                    reasons.append(cell)
                cell = f"– ({reasons.index(cell) + 1})"
            row[labels[name]] = cell
        rows[f"`{method}`"] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "method"
    table = frame.to_markdown()
    notes = "\n".join(f"{number}. {reason}" for number, reason in enumerate(reasons, 1))
    return f"{table}\n\n{notes}\n" if notes and reasons_listed else f"{table}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llava.support",
        description=(
            f"Print which pruning method runs on which model class, as a Markdown table: apply_pruning is "
            f"called with every method (default options, {BUDGET} tokens) on each family's tiny model; a "
            f"refused cell shows '–' and the number of the reason it raised."
        ),
    )
    parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    print(to_markdown(support_matrix()), end="")


if __name__ == "__main__":
    main()
