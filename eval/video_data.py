"""Build the local data files of the video QA tasks from Video-LLaVA's evaluation files.

    python -m eval.video_data msvd --questions MSVD_Zero_Shot_QA/test_q.json \\
        --answers MSVD_Zero_Shot_QA/test_a.json --videos MSVD_Zero_Shot_QA/videos

writes data/video/msvd_qa.jsonl (what task videollava_msvd_qa reads): one line per question with
question_id, question, answer, type and the absolute path of its video. Video-LLaVA's files are
lists of {video_name, question, question_id} and {answer, type, question_id}; a question file
subset (e.g. FasterVLM's test_q_1k.json) gives that subset.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from efficiency.command import ResultFileError, atomic_write_text, check_input, check_output, read_json

BENCHMARKS = ("msvd", "msrvtt", "tgif", "activitynet")
SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".gif", ".mov", ".m4v")
PREFIXES = ("", "v_")  # ActivityNet files are named v_<id>
QUESTION_KEYS = ("video_name", "question", "question_id")
ANSWER_KEYS = ("answer", "question_id")


def find_video(folder: Path, name: str) -> Path | None:
    for prefix in PREFIXES:
        for suffix in ("",) + SUFFIXES:
            candidate = folder / f"{prefix}{name}{suffix}"
            if candidate.is_file():
                return candidate.resolve()
    return None


def _entries(path: Path, keys: tuple[str, ...], what: str) -> list[dict]:
    """The list of `keys`-holding objects in `path` (Video-LLaVA's format); ResultFileError naming the file."""
    entries = read_json(path, what=f"a list of {what}", kind=list)
    for number, entry in enumerate(entries):
        missing = [key for key in keys if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise ResultFileError(f"{path}: entry {number} has no {', '.join(missing)}; expected a list of {what}")
    return entries


def build(questions: Path, answers: Path, videos: Path) -> list[dict]:
    answer_of = {str(a["question_id"]): a for a in _entries(answers, ANSWER_KEYS, "{answer, type, question_id}")}
    rows, missing = [], []
    for q in _entries(questions, QUESTION_KEYS, "{video_name, question, question_id}"):
        qid = str(q["question_id"])
        if qid not in answer_of:
            raise SystemExit(f"{answers}: no answer for question_id {qid}")
        video = find_video(videos, str(q["video_name"]))
        if video is None:
            missing.append(str(q["video_name"]))
            continue
        rows.append({"question_id": qid, "question": q["question"], "answer": answer_of[qid]["answer"],
                     "type": answer_of[qid].get("type"), "video": str(video)})  # fmt: skip
    if missing:
        raise SystemExit(f"{videos}: {len(missing)} videos not found, e.g. {', '.join(missing[:5])}")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.video_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("benchmark", choices=BENCHMARKS)
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--answers", type=Path, required=True)
    parser.add_argument("--videos", type=Path, required=True, help="folder holding the videos")
    parser.add_argument("--out", type=Path, help="default: data/video/<benchmark>_qa.jsonl")
    args = parser.parse_args(argv)
    out = args.out or Path("data/video") / f"{args.benchmark}_qa.jsonl"
    check_input(parser, "--questions", args.questions)
    check_input(parser, "--answers", args.answers)
    check_input(parser, "--videos", args.videos, folder=True)
    if out.exists():
        parser.error(f"--out: {out} exists; remove it first to rebuild it")
    check_output(parser, "--out", out)
    try:
        rows = build(args.questions, args.answers, args.videos)
    except ResultFileError as error:
        raise SystemExit(f"error: {error}") from None
    atomic_write_text(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(f"{out}: {len(rows)} questions")


if __name__ == "__main__":
    main()
