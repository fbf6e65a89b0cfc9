"""POPE with LLaVA's answer reading; precision/recall/F1 are lmms-eval's (positive class "yes")."""

from lmms_eval.tasks.pope.utils import (  # noqa: F401
    pope_aggregate_accuracy,
    pope_aggregate_f1_score,
    pope_aggregate_precision,
    pope_aggregate_recall,
    pope_aggregate_yes_ratio,
)

SHORT_ANSWER = "Answer the question using a single word or phrase."
METRICS = ("pope_accuracy", "pope_precision", "pope_recall", "pope_f1_score", "pope_yes_ratio")


def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return f"{doc['question'].strip()}\n{SHORT_ANSWER}"


def read_answer(text: str) -> str:
    """LLaVA's rule: the first sentence, commas dropped; any word "No", "no" or "not" means no."""
    sentence = text.split(".")[0].replace(",", "")
    words = sentence.split(" ")
    return "no" if {"No", "no", "not"} & set(words) else "yes"


def process_results(doc, results):
    truth = doc["answer"].lower().strip()
    prediction = read_answer(results[0])
    record = {"question_id": doc["question_id"], "score": float(prediction == truth), "prediction": prediction,
              "ground_truth": truth}  # fmt: skip
    return {metric: dict(record) for metric in METRICS}
