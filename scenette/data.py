"""Scenette's fixed evaluation sets and its training stream, all derived from integer seeds.

Evaluation scenes and training scenes come from disjoint seed ranges. The evaluation sets are
small JSONL files (one row per question; the image is re-rendered from `scene_seed`), written on
first use to the user's cache folder (`DATA_DIR`: `platformdirs.user_cache_path("vispruner")/scenette`,
e.g. ~/.cache/vispruner/scenette on Linux; never inside the installed package) and rebuilt whenever
the generator's version changes: `python -m scenette.data [--output FOLDER]` writes them explicitly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from functools import cache
from pathlib import Path

from platformdirs import user_cache_path

from .prompt import question_text
from .questions import CATEGORIES, QUESTION_TYPES, Question, make_question, question_rng
from .scene import render_image, sample_scene

BENCHMARK = "scenette"
# Bump when anything that changes questions or pixels changes (scene.py, questions.py, glyphs.py).
GENERATOR_VERSION = 1
QUESTIONS_PER_TYPE = 240  # existence: 80 per negative category, half yes and half no
EVAL_SEED_BASE = 1 << 40  # evaluation scenes: EVAL_SEED_BASE + type index * 10**6 + i
VALIDATION_SEED_BASE = EVAL_SEED_BASE + 10**8  # validation scenes (watched during training), same layout
TRAIN_SEED_STRIDE = 10**9  # training scenes of run seed s: s * 10**9 + offset (< EVAL_SEED_BASE)
# A cache (rebuilt from the seeds when missing or stale): per user, since an installed package may be read-only.
DATA_DIR = user_cache_path("vispruner") / BENCHMARK


def eval_scene_seed(qtype: str, index: int, base: int = EVAL_SEED_BASE) -> int:
    return base + QUESTION_TYPES.index(qtype) * 10**6 + index


def build_eval_set(qtype: str, size: int = QUESTIONS_PER_TYPE, base: int = EVAL_SEED_BASE) -> list[Question]:
    """The fixed evaluation questions of one type: categories (and yes/no) taken in turn."""
    categories = CATEGORIES[qtype]
    questions: list[Question] = []
    index = 0
    while len(questions) < size:
        slot = len(questions)
        category = categories[slot % len(categories)]
        want_yes = (slot // len(categories)) % 2 == 0 if qtype == "existence" else None
        seed = eval_scene_seed(qtype, index, base)
        index += 1
        question = make_question(sample_scene(seed), qtype, category, question_rng(seed), want_yes)
        if question is not None:
            questions.append(question)
    return questions


def to_row(question: Question, index: int) -> dict:
    row = question.to_dict()
    row["question_id"] = f"{question.type}-{index:04d}"
    row["prompt"] = question_text(question.question)
    return row


def fingerprint(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


@cache
def _eval_rows(qtype: str) -> tuple[dict, ...]:
    return tuple(to_row(q, i) for i, q in enumerate(build_eval_set(qtype)))


def eval_rows(qtype: str | None = None) -> list[dict]:
    """Rows of one type's evaluation set (all types if None), in their fixed order."""
    types = QUESTION_TYPES if qtype is None else (qtype,)
    for name in types:
        if name not in QUESTION_TYPES:
            raise ValueError(f"unknown question type {name!r}; allowed: {', '.join(QUESTION_TYPES)}")
    return [dict(row) for name in types for row in _eval_rows(name)]


def validation_rows(per_type: int) -> list[dict]:
    """Questions built like the evaluation sets from their own scenes, for watching training
    without looking at the evaluation sets."""
    return [
        to_row(q, i)
        for qtype in QUESTION_TYPES
        for i, q in enumerate(build_eval_set(qtype, per_type, VALIDATION_SEED_BASE))
    ]


def subset(rows: list[dict], per_type: int) -> list[dict]:
    """The first `per_type` rows of each type (a fixed, smaller evaluation set)."""
    taken: dict[str, int] = {}
    out = []
    for row in rows:
        if taken.get(row["type"], 0) < per_type:
            taken[row["type"]] = taken.get(row["type"], 0) + 1
            out.append(row)
    return out


def eval_file(qtype: str, directory: Path | None = None) -> Path:
    """The JSONL file of one type's evaluation set, written (or rewritten if stale: the folder's manifest.json
    does not list it as it is now) on first use. A manifest.json that is not one (not a JSON object) is a
    ResultFileError naming it, left as it is. Each file is written whole (beside, then renamed)."""
    from efficiency.command import atomic_write_text, read_json

    directory = DATA_DIR if directory is None else Path(directory)
    path = directory / f"{qtype}.jsonl"
    manifest_path = directory / "manifest.json"
    rows = eval_rows(qtype)
    stamp = {"generator_version": GENERATOR_VERSION, "fingerprint": fingerprint(rows), "rows": len(rows)}
    manifest = read_json(manifest_path, what="Scenette's data manifest") if manifest_path.exists() else {}
    if not path.is_file() or manifest.get(qtype) != stamp:
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
        manifest[qtype] = stamp
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def doc_image(row: dict):
    """The PIL image of an evaluation row (rendered from its scene seed)."""
    return render_image(sample_scene(int(row["scene_seed"])))


def main(argv=None) -> None:
    from efficiency.command import ResultFileError, atomic_write, check_output

    parser = argparse.ArgumentParser(prog="python -m scenette.data",
                                     description="Write Scenette's fixed evaluation sets as JSONL.")  # fmt: skip
    parser.add_argument("--output", type=Path, default=DATA_DIR, help=f"folder (default {DATA_DIR})")
    parser.add_argument("--images", action="store_true", help="also save each row's image as PNG (for inspection)")
    args = parser.parse_args(argv)
    check_output(parser, "--output", args.output, folder=True, exist_ok=True)
    for qtype in QUESTION_TYPES:
        try:
            path = eval_file(qtype, args.output)
        except ResultFileError as error:
            raise SystemExit(f"error: {error}") from None
        rows = eval_rows(qtype)
        answers = {}
        for row in rows:
            answers[row["answer"]] = answers.get(row["answer"], 0) + 1
        print(
            f"{path}: {len(rows)} questions, fingerprint {fingerprint(rows)}, answers {dict(sorted(answers.items()))}"
        )
        if args.images:
            folder = args.output / "images"
            folder.mkdir(parents=True, exist_ok=True)
            for row in rows:
                atomic_write(folder / f"{row['question_id']}.png", doc_image(row).save)


if __name__ == "__main__":
    main()
