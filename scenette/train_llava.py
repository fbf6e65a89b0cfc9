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

from .train_vision import RUNS_DIR


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--pool", type=int, default=8000, help="training scenes (encoded once, then reused with new questions)"
    )
    parser.add_argument("--turns", type=int, default=2, help="questions per image and sequence")
    parser.add_argument(
        "--content-steps", type=int, default=2400, help="curriculum: steps that see no background patch"
    )
    parser.add_argument(
        "--ramp-steps", type=int, default=300, help="curriculum: steps over which the background share grows to 1"
    )
    parser.add_argument(
        "--system-share",
        type=float,
        default=0.1,
        help="share of conversations that start with LLaVA's system line (evaluation uses it; "
        "without it the question is fewer tokens from the answer, which speeds up learning)",
    )
    parser.add_argument(
        "--compact-share",
        type=float,
        default=0.5,
        help="share of conversations whose kept patches sit at consecutive position ids, as a pruned "
        "image's do (the rest keep their full-image ids)",
    )
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--align-images", type=int, default=64, help="images for the projector's closed-form alignment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument(
        "--validate-every", type=int, default=250, help="steps between validation runs (a multiple of --save-every)"
    )
    parser.add_argument("--validate-per-type", type=int, default=20, help="validation questions per type (0: none)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
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
        "scripts/train_scenette.sh writes the shipped scenette/scenette-llava)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from .llava_training import train  # torch loads here, after `--help` has answered

    train(args)


if __name__ == "__main__":
    main()
