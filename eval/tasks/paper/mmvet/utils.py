"""MM-Vet answers in the official evaluator's format ({question_id: answer})."""

import json

from lmms_eval.tasks._task_utils.file_utils import generate_submission_file


def doc_to_visual(doc):
    return [] if doc["image"] is None else [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    return {"submission": {"question_id": doc["question_id"], "answer": results[0].strip()}}


def aggregate_submission(results, args):
    path = generate_submission_file("mmvet_submission.json", args)
    with open(path, "w") as handle:
        json.dump({item["question_id"]: item["answer"] for item in results}, handle, indent=1, ensure_ascii=False)
    return len(results)
