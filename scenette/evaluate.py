"""Direct evaluation on Scenette: a model, its processor and question rows -> accuracy per type.

The in-process path beside lmms-eval (used by training's validation and the regression tests;
the main command, `python -m eval.scenette`, goes through lmms-eval): same rows, same prompt text,
same scoring function (`prompt.score_answer`), batched greedy generation. Works on a model with
`llava.apply_pruning(...)` applied, since it only calls `processor(...)` and `model.generate(...)`.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from tqdm import tqdm

from .data import doc_image, eval_rows
from .prompt import conversation, score_answer
from .questions import QUESTION_TYPES


def predict(
    model, processor, rows: list[dict], batch_size: int = 16, max_new_tokens: int = 6, progress: bool = True
) -> list[str]:
    """The model's answer to each row (greedy, special tokens dropped, outer spaces stripped)."""
    answers: list[str] = []
    batches = range(0, len(rows), batch_size)
    for start in tqdm(batches, desc="scenette", disable=not progress, dynamic_ncols=True):
        chunk = rows[start : start + batch_size]
        inputs = processor(
            text=[conversation(row["prompt"]) for row in chunk],
            images=[doc_image(row) for row in chunk],
            padding=True,
            return_tensors="pt",
        )
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        answers += [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


def summarize(rows: list[dict], answers: list[str]) -> dict:
    """Accuracy per type, per type/category, and the mean over the types present."""
    per_type, per_category = defaultdict(list), defaultdict(list)
    for row, answer in zip(rows, answers):
        score = score_answer(answer, row["answer"])
        per_type[row["type"]].append(score)
        per_category[f"{row['type']}/{row['category']}"].append(score)
    types = [t for t in QUESTION_TYPES if t in per_type]
    accuracy = {t: 100 * sum(per_type[t]) / len(per_type[t]) for t in types}
    return {
        "accuracy": accuracy,
        "mean": sum(accuracy.values()) / len(accuracy) if accuracy else float("nan"),
        "by_category": {k: 100 * sum(v) / len(v) for k, v in sorted(per_category.items())},
        "questions": {t: len(per_type[t]) for t in types},
    }


def evaluate(model, processor, rows: list[dict] | None = None, batch_size: int = 16, progress: bool = True) -> dict:
    """`summarize` of the model's answers on `rows` (default: every fixed evaluation question)."""
    rows = eval_rows() if rows is None else rows
    return summarize(rows, predict(model, processor, rows, batch_size, progress=progress))
