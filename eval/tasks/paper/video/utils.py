"""Video-LLaVA open-ended QA: prompts, and the predictions file the GPT judge reads."""

import json

from lmms_eval.tasks._task_utils.file_utils import generate_submission_file

from eval.judge import PREDICTIONS  # one benchmark per results folder; the judge reads this file


def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    record = {"question_id": str(doc["question_id"]), "question": doc["question"], "answer": doc["answer"],
              "pred": results[0].strip()}  # fmt: skip
    return {"predictions": record}


def aggregate_predictions(results, args):
    """Write every prediction for `python -m eval.judge`; the count is the task's local metric."""
    with open(generate_submission_file(PREDICTIONS, args), "w") as handle:
        json.dump(results, handle, indent=1, ensure_ascii=False)
    return len(results)
