"""Regenerate the analysis figures (the paper's Figures 2, 3 and kept-token pictures) into `figures/`.

    python -m analysis                       # everything, default model and question set (analysis/subjects.py)
    python -m analysis shift dispersion      # only these
    python -m analysis --smoke --figures /tmp/figs            # a random-weight model on a few drawn questions
    python -m analysis --model liuhaotian/llava-v1.5-7b --data llava_v1_5_mix1k.jsonl --image-folder train/ \\
        --device cuda:0 --dtype float16 --quartile-layers 0 2 4 8 12 16 20 24 28 31 --no-accuracy

Intermediate results are cached under --results (resumable); figures are written as PNG and PDF.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from efficiency.command import (
    atomic_write_text,
    check_input,
    fraction,
    model_problem,
    non_negative_int,
    output_problem,
    positive_int,
    resolve_device,
)

from .defaults import (
    DEFAULT_BUDGET,
    DEFAULT_DATASET,
    DEFAULT_MODEL,
    DEFAULT_QUESTIONS_PER_TYPE,
    RESULTS,
    SMOKE_QUESTIONS,
)

# The study, the figures and the hardware record import torch and the model classes: they are imported
# when a run starts, so that `--help` and argument errors answer at once.
if TYPE_CHECKING:
    from .study import Study

PARTS = ("shift", "dispersion", "pictures")
FIGURES = Path("figures")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m analysis", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"which figures: {', '.join(PARTS)} (default: all)")
    what = parser.add_argument_group("model and questions")
    what.add_argument(
        "--model",
        help=f"{', '.join(NAMED_MODELS)} or a checkpoint folder / Hub id (default {DEFAULT_MODEL})",
    )
    what.add_argument("--data", help=f"{', '.join(NAMED_DATASETS)} or a JSONL file (default {DEFAULT_DATASET})")
    what.add_argument(
        "--image-folder", type=Path, help="folder the JSONL's image paths are relative to (default: the file's folder)"
    )
    what.add_argument(
        "--per-type",
        type=non_negative_int,
        default=DEFAULT_QUESTIONS_PER_TYPE,
        help="Scenette: questions per type (0: all)",
    )
    what.add_argument("--limit", type=positive_int, help="only the first N questions")
    what.add_argument(
        "--template", default="vicuna_v1", help="conversation template for checkpoints (default vicuna_v1)"
    )
    what.add_argument("--max-new-tokens", type=positive_int, help="answer length limit (default: the model's)")
    what.add_argument("--device", help="e.g. cuda:0 (default: cpu)")
    what.add_argument("--dtype", choices=DTYPES, help="for checkpoints, e.g. float16 on a GPU")
    what.add_argument(
        "--smoke",
        action="store_true",
        help=f"a random-weight model on {SMOKE_QUESTIONS} drawn questions, to check the pipeline",
    )
    how = parser.add_argument_group("analysis settings")
    how.add_argument(
        "--layer",
        type=non_negative_int,
        default=1,
        help="LM layer whose last-token attention Fig. 2(a)/3 read (default 1)",
    )
    how.add_argument(
        "--budget", type=positive_int, default=DEFAULT_BUDGET, help=f"tokens selected/kept (default {DEFAULT_BUDGET})"
    )
    how.add_argument(
        "--quartile-layers", type=non_negative_int, nargs="+", help="Fig. 2(c)'s layers (default: every layer)"
    )
    how.add_argument(
        "--prune-layer", type=non_negative_int, default=0, help="layer from which Fig. 3's pruning applies (default 0)"
    )
    how.add_argument("--seed", type=non_negative_int, default=0, help="random selection's seed")
    how.add_argument("--no-accuracy", action="store_true", help="skip the accuracy experiments (attention only)")
    how.add_argument("--examples", type=positive_int, default=4, help="images in the kept-token picture (default 4)")
    how.add_argument(
        "--important-ratio", type=fraction, default=0.5, help="VisPruner's important ratio in the pictures"
    )
    how.add_argument("--fastv-layer", type=non_negative_int, default=2, help="FastV's K in the pictures (default 2)")
    out = parser.add_argument_group("output")
    out.add_argument("--figures", type=Path, default=FIGURES, help=f"figure folder (default {FIGURES})")
    out.add_argument("--results", type=Path, default=RESULTS, help=f"cache of intermediate results (default {RESULTS})")
    out.add_argument(
        "--overwrite", action="store_true", help="replace cached results made for another model or question set"
    )
    out.add_argument("--batch-size", type=positive_int, default=8)
    out.add_argument("--threads", type=positive_int, help="torch CPU threads")
    args = parser.parse_args(argv)
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.smoke:
        given = [f"--{name}" for name in ("model", "data") if getattr(args, name) is not None]
        if given:
            parser.error(f"--smoke runs its own random-weight model on drawn questions: drop {' and '.join(given)}")
        args.examples = min(args.examples, 2)
    args.model = args.model or DEFAULT_MODEL
    args.data = args.data or DEFAULT_DATASET
    from llava.conversation import TEMPLATES  # light: no torch

    if args.template not in TEMPLATES:
        parser.error(f"--template: unknown {args.template!r}; allowed: {', '.join(sorted(TEMPLATES))}")
    check_paths(parser, args)
    return args


NAMED_MODELS = ("scenette", "tiny", "smoke")  # analysis.subjects.MODELS (imported there with torch)
NAMED_DATASETS = ("scenette", "drawn")  # analysis.subjects.DATASETS
DTYPES = ("auto", "float16", "bfloat16", "float32")


def check_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Before any model loads: the model and question set exist, the device is there, the figure and result
    folders can be written, and --dtype applies (named models run as they are built)."""
    if not args.smoke and args.model not in NAMED_MODELS:
        problem = model_problem(args.model)
        if problem:
            parser.error(f"--model {args.model}: {problem}; or one of {', '.join(NAMED_MODELS)}")
    elif args.dtype not in (None, "auto"):
        parser.error(f"--dtype {args.dtype}: applies to checkpoints; the named models ({', '.join(NAMED_MODELS)}) "
                     "run in float32")  # fmt: skip
    if not args.smoke and args.data not in NAMED_DATASETS:
        check_input(parser, "--data", Path(args.data))
    check_input(parser, "--image-folder", args.image_folder, folder=True)
    if args.device is not None:
        args.device = resolve_device(args.device, parser)
    for option, folder in (("--figures", args.figures), ("--results", args.results)):
        problem = output_problem(folder, folder=True, exist_ok=True)
        if problem:
            parser.error(f"{option}: {problem}")


def run(args: argparse.Namespace) -> dict:
    from efficiency.hardware import describe

    from .study import Settings, open_study

    started = time.perf_counter()
    settings = Settings(
        args.layer,
        args.budget,
        tuple(args.quartile_layers) if args.quartile_layers else None,
        args.prune_layer,
        args.seed,
        args.batch_size,
    )
    study = open_study(
        args.model,
        args.data,
        smoke=args.smoke,
        limit=args.limit,
        per_type=args.per_type or None,
        image_folder=args.image_folder,
        template=args.template,
        dtype=args.dtype,
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        settings=settings,
        results=args.results,
        overwrite=args.overwrite,
        threads=args.threads,
    )
    subject, dataset = study.subject, study.dataset
    print(
        f"model: {subject.description or subject.name}\nquestions: {dataset.name} ({len(dataset)})\nresults: {study.folder}"
    )
    made, timings, numbers = [], {}, {}
    for part in dict.fromkeys(args.parts or PARTS):
        start = time.perf_counter()
        made += _part(part, study, args, numbers)
        timings[part] = round(time.perf_counter() - start, 1)
        print(f"{part}: {timings[part]} s")
    record = {
        "command": "python -m analysis " + " ".join(sys.argv[1:]),
        "model": subject.name,
        "model_description": subject.description,
        "dataset": dataset.name,
        "questions": len(dataset),
        "results": str(study.folder),
        "figures": [str(p) for p in made],
        "seconds": timings,
        "total_seconds": round(time.perf_counter() - started, 1),
        "hardware": describe(subject.device),
        "settings": asdict(study.settings),
        "numbers": numbers,
    }
    atomic_write_text(args.figures / "analysis_run.json", json.dumps(record, indent=1) + "\n")
    print(f"figures: {', '.join(str(p) for p in made)}\ntotal: {record['total_seconds']} s")
    return record


def _part(part: str, study: Study, args, numbers: dict) -> list[Path]:
    """Draw one part's figures; its headline numbers go into `numbers` (rounded, for the run record)."""
    from . import plots
    from .pictures import pick_examples, selection_example, selection_figure

    accuracy = not args.no_accuracy
    if part == "shift":
        result = study.shift(with_accuracy=accuracy)
        numbers["shift"] = _rounded({k: result[k] for k in SHIFT_NUMBERS if k in result})
        return plots.save(plots.shift_figure(result), args.figures, "fig2_attention_shift")
    if part == "dispersion":
        result = study.dispersion(with_accuracy=accuracy)
        signals = {
            name: {k: v[k] for k in ("top1_share", "top20pct_share", "normalized_entropy")}
            for name, v in result["signals"].items()
        }
        numbers["dispersion"] = _rounded(
            {"signals": signals, **{k: result[k] for k in ("full_accuracy", "accuracy") if k in result}}
        )
        return plots.save(plots.dispersion_figure(result), args.figures, "fig3_attention_dispersion")
    subject, dataset = study.subject, study.dataset
    budget = study.settings.budget
    examples = [  # each picture gets its own random draw (seed + its number)
        selection_example(
            subject, sample, dataset.score, budget, args.important_ratio, args.fastv_layer, args.seed + number
        )
        for number, sample in enumerate(pick_examples(dataset, args.examples))
    ]
    description = subject.description or subject.name
    numbers["pictures"] = [
        {"question": e.sample.question, "reference": e.sample.answer, "answers": {p.title: p.answer for p in e.panels}}
        for e in examples
    ]
    paths = plots.save(selection_figure(examples[:1], description, budget), args.figures, "fig1_token_selection")
    return paths + plots.save(
        selection_figure(examples, description, budget), args.figures, "fig4_token_selection_examples"
    )


SHIFT_NUMBERS = (
    "quartile_shares",
    "quartile_shares_question",
    "quartile_shares_equal_positions",
    "full_accuracy",
    "quartile_layers",
    "quartile_accuracy",
)


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return [_rounded(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    return round(float(value), 4) if isinstance(value, float) else value


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as error:  # ResultFileError too: a cached file that cannot be used
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
