"""TextVQA with OCR reference tokens (the LLaVA-1.5 protocol); scoring is lmms-eval's VQA accuracy."""

from lmms_eval.tasks.textvqa.utils import textvqa_aggregate_submissions, textvqa_process_results  # noqa: F401

SHORT_ANSWER = "Answer the question using a single word or phrase."


def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    ocr = ", ".join(doc.get("ocr_tokens") or [])
    return f"{doc['question']}\nReference OCR token: {ocr}\n{SHORT_ANSWER}"
