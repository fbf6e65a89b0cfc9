"""lmms-eval hooks for the Scenette tasks: the rows come from `scenette.data`, the images are
rendered from each row's scene seed, and answers are scored by `scenette.prompt.score_answer`
(the same function the direct evaluation uses)."""

from scenette.data import doc_image, eval_file
from scenette.prompt import question_text, score_answer
from scenette.questions import QUESTION_TYPES


def doc_to_visual(doc):
    return [doc_image(doc).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """The plain question and a short answer instruction; `pre_prompt`/`post_prompt` replace the
    instruction when a task override gives them."""
    kwargs = lmms_eval_specific_kwargs or {}
    if "pre_prompt" in kwargs or "post_prompt" in kwargs:
        return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"
    return question_text(doc["question"])


def process_results(doc, results):
    return {"exact_match": score_answer(results[0], doc["answer"])}


def __getattr__(name):
    """`<type>_file`: the path of that type's JSONL, written on first use (the YAMLs read
    `data_files` through `!function utils.<type>_file`, so no path is hard-coded)."""
    qtype = name[: -len("_file")] if name.endswith("_file") else None
    if qtype in QUESTION_TYPES:
        return str(eval_file(qtype))
    raise AttributeError(name)
