"""Stage 1: pretrain Scenette-LLaVA's CLIP-style vision tower from scratch on the scene stream.

The objective is supervised scene parsing, ViT-style:
* from [CLS] (the tower's pooled output): which colour-shape pairs are present (multi-label), how
  many shapes there are, and which glyphs are on the signs; so [CLS] must gather the objects and
  the signs, which is what makes its attention worth pruning by;
* from every patch of the penultimate layer (the features LLaVA hands its projector): the colour,
  shape and colour-shape pair of the object covering it, the glyph if it covers the sign, whether it
  holds an object's centre, and where the patch is; so the features the language model reads
  describe their patch (the pair makes "is there a red star" one lookup, which lifted existence
  from chance to 92.5 %) and keep its place, as a real CLIP's do (position questions need it once
  pruning has dropped the rest of the image).
Pretraining scenes carry four signs instead of the benchmark's one, for more glyphs per image.

    python -m scenette.train_vision      # the shipped recipe (scripts/train_scenette.sh); resumes if interrupted
"""

from __future__ import annotations

import argparse
from pathlib import Path

from efficiency.command import ResultFileError, check_output, finite_float, non_negative_int, positive_int

# Training writes relative to the current directory (never into the installed package); stage 2
# finds the stage-1 tower here.
RUNS_DIR = Path("runs") / "scenette"


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scenette.train_vision", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--steps", type=positive_int, default=2400)
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--lr", type=finite_float(0, None, low_open=True), default=2e-3)
    parser.add_argument("--warmup", type=non_negative_int, default=100)
    parser.add_argument(
        "--signs", type=positive_int, default=4, help="signs per pretraining scene (the benchmark has 1)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--save-every", type=positive_int, default=50)
    parser.add_argument("--threads", type=non_negative_int, default=0, help="torch threads (default 0: torch's choice)")
    parser.add_argument(
        "--run-dir", type=Path, default=RUNS_DIR, help=f"the resumable state and the trained tower (default {RUNS_DIR})"
    )
    return parser


def check_run_dir(parser: argparse.ArgumentParser, run_dir: Path, stage: str) -> None:
    """Before training starts: the run folder can be written, and a state left there resumes (read with
    weights_only=True: a state file can hold tensors and numbers, never code)."""
    check_output(parser, "--run-dir", run_dir, folder=True, exist_ok=True)
    state = run_dir / f"{stage}-state.pt"
    if state.exists():
        from .training import load_state

        try:
            load_state(state)
        except ResultFileError as error:
            raise SystemExit(f"error: --run-dir {run_dir}: {error}") from None


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_run_dir(parser, args.run_dir, "vision")
    from .vision_training import train  # torch loads here, after `--help` has answered

    train(args)


if __name__ == "__main__":
    main()
