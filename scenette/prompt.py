"""How Scenette questions are put to a model, and how answers are scored (one function for both
the direct evaluation and the lmms-eval task).

Prompts use LLaVA-1.5's evaluation template (`vicuna_v1` from `llava.conversation`, the one our
lmms-eval plugin uses by default), so training, the direct evaluation and lmms-eval agree token for token.
"""

from __future__ import annotations

import re

from llava.conversation import get_template

ANSWER_INSTRUCTION = "Answer with one word."
TEMPLATE = get_template("vicuna_v1")
USER, ASSISTANT = TEMPLATE.roles
END_OF_TURN = TEMPLATE.sep2
IMAGE_TOKEN = "<image>"

_NUMBER_WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}


def question_text(question: str) -> str:
    """What the user says: the plain question and a short answer instruction (lmms-eval's doc_to_text)."""
    return f"{question}\n{ANSWER_INSTRUCTION}"


def conversation(text: str, system: bool = True) -> str:
    """The single-turn LLaVA-1.5 prompt for `text` about one image, ending where the answer starts
    (without the system line if `system` is False: training uses both)."""
    prompt = TEMPLATE.single_turn(f"{IMAGE_TOKEN}\n{text}")
    return prompt if system else prompt[len(TEMPLATE.system + TEMPLATE.sep) :]


def follow_up(text: str) -> str:
    """A later user turn of the same conversation (no image), ending where the answer starts."""
    return f"{USER}: {text}{TEMPLATE.sep}{ASSISTANT}:"


def training_conversation(turns: list[tuple[str, str]], system: bool = True) -> tuple[str, list[tuple[int, int]]]:
    """A multi-turn conversation about one image and the character spans of its answers (+ end token).

    The first turn is exactly `conversation(...)` followed by the answer, so training and evaluation
    prompts agree; the whole text equals `TEMPLATE.prompt(...)` of the same turns (a test checks it).
    """
    text, spans = "", []
    for index, (question, answer) in enumerate(turns):
        text += conversation(question_text(question), system) if index == 0 else follow_up(question_text(question))
        start = len(text)
        text += f" {answer}{END_OF_TURN}"
        spans.append((start, len(text)))
    return text, spans


def normalize_answer(text: str) -> str:
    """Lower case, outer spaces and punctuation removed, number words as digits."""
    text = re.sub(r"\s+", " ", text.strip().lower()).strip(" .,;:!?\"'")
    text = re.sub(r"\s*-\s*", "-", text)
    return _NUMBER_WORDS.get(text, text)


def score_answer(prediction: str, target: str) -> float:
    """1.0 if the prediction is the target after normalisation, else 0.0 (exact match)."""
    return float(normalize_answer(prediction) == normalize_answer(target))
