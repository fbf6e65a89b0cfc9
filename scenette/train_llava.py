"""Stage 2: train Scenette-LLaVA's projector and language model on the question stream.

LLaVA-1.5's second stage, with the stage-1 vision tower frozen. There is no language-model
pretraining to start from (the vocabulary is the benchmark's), so LLaVA's projector-alignment stage
becomes a closed-form initialisation of the projector (`align.py`), and then the projector and the
Llama are trained together on short conversations about one image (`--turns` questions each); the
loss is on the answers (and their end-of-turn tokens) only.

A language model trained from scratch does not find the one patch a question is about among 576
within our CPU budget (measured: after 750 steps of 8 x 12-turn conversations, reading was still
at chance). So the stream starts with a curriculum on the *background*: the sequence holds every
patch that shows an object or the sign but only a share of the background patches, each at its
own position id (the rest of the image is left out, not moved up); the share grows from 0 to 1
over `--content-steps` + `--ramp-steps` steps, and the remaining steps see every patch, as
evaluation does. The curriculum favours no pruning method: the finished model is trained last on
whole images and evaluated on whole images, and which patches show something is known here only
from the renderer's label map, which no method sees. Most conversations (`--system-share`) leave
out LLaVA's system line, whose 28 tokens slow the start of learning several times; evaluation
uses it. Half the conversations (`--compact-share`) put their kept patches at consecutive position
ids, as any pre-LLM pruning method hands them over; trained only on full-image ids the model broke
on shortened sequences in ways that depended on their length (measured: VisPruner at 128 tokens
answered no shape question right, at 64 tokens 95 %), which says nothing about the methods.

    python -m scenette.train_llava --steps 2800 --content-steps 2400 --ramp-steps 300   # resumes if interrupted
"""

from __future__ import annotations

import argparse
from pathlib import Path

from efficiency.command import check_output, finite_float, fraction, non_negative_int, positive_int

from .train_vision import RUNS_DIR, check_run_dir


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.validate_every % args.save_every:
        parser.error(f"--validate-every {args.validate_every}: must be a multiple of --save-every "
                     f"({args.save_every}): validation runs when the state is saved")  # fmt: skip
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scenette.train_llava", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--steps", type=positive_int, default=2800)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--pool", type=positive_int, default=8000, help="training scenes (encoded once, then reused with new questions)"
    )
    parser.add_argument("--turns", type=positive_int, default=2, help="questions per image and sequence")
    parser.add_argument(
        "--content-steps", type=non_negative_int, default=2400, help="curriculum: steps that see no background patch"
    )
    parser.add_argument(
        "--ramp-steps",
        type=non_negative_int,
        default=300,
        help="curriculum: steps over which the background share grows to 1",
    )
    parser.add_argument(
        "--system-share",
        type=fraction,
        default=0.1,
        help="share of conversations that start with LLaVA's system line (evaluation uses it; "
        "without it the question is fewer tokens from the answer, which speeds up learning)",
    )
    parser.add_argument(
        "--compact-share",
        type=fraction,
        default=0.5,
        help="share of conversations whose kept patches sit at consecutive position ids, as a pruned "
        "image's do (the rest keep their full-image ids)",
    )
    parser.add_argument("--lr", type=finite_float(0, None, low_open=True), default=2e-3)
    parser.add_argument("--warmup", type=non_negative_int, default=100)
    parser.add_argument(
        "--align-images", type=positive_int, default=64, help="images for the projector's closed-form alignment"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--save-every", type=positive_int, default=50)
    parser.add_argument(
        "--validate-every",
        type=positive_int,
        default=250,
        help="steps between validation runs (a multiple of --save-every)",
    )
    parser.add_argument(
        "--validate-per-type", type=non_negative_int, default=20, help="validation questions per type (0: none)"
    )
    parser.add_argument("--threads", type=non_negative_int, default=0, help="torch threads (default 0: torch's choice)")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=RUNS_DIR,
        help=f"holds the stage-1 vision tower and the resumable state (default {RUNS_DIR})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where the trained model goes (default RUN_DIR/model; "
        "scripts/train_scenette.sh writes the shipped scenette/scenette-llava); a folder that exists must be a "
        "model folder (its files are replaced)",
    )
    return parser


def main(argv=None) -> None:
    args = parse_args(argv)
    parser = build_parser()
    vision = args.run_dir / "vision_tower" / "config.json"
    if not vision.is_file():
        parser.error(f"--run-dir {args.run_dir}: no stage-1 vision tower ({vision} missing); "
                     "run `python -m scenette.train_vision` with this --run-dir first")  # fmt: skip
    check_run_dir(parser, args.run_dir, "llava")
    output = args.output or args.run_dir / "model"
    check_output(parser, "--output", output, folder=True, exist_ok=True)
    if output.is_dir() and any(output.iterdir()) and not (output / "config.json").is_file():
        parser.error(f"--output: {output} exists and is not a model folder (no config.json); its files would be "
                     "mixed with the model's: choose another path")  # fmt: skip
    from .llava_training import train  # torch loads here, after `--help` has answered

    train(args)


if __name__ == "__main__":
    main()
