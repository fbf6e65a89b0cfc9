"""The original LLaVA conversation templates, so prompts are the strings the paper's evaluation used.

    get_template("vicuna_v1").single_turn("<image>\nWhat is shown?")
    # "A chat between a curious user and an artificial intelligence assistant. The assistant gives
    #  helpful, detailed, and polite answers to the user's questions. USER: <image>\nWhat is shown? ASSISTANT:"

Only the templates the LLaVA-1.5/1.6 (Vicuna) checkpoints and their evaluation use are here. The
strings are protocol, reproduced exactly from LLaVA's `conversation.py` (`conv_vicuna_v1`,
`conv_llava_v1`, `conv_llava_plain`); tests pin them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Message = tuple[str, "str | None"]


@dataclass(frozen=True)
class ConversationTemplate:
    """How LLaVA joins a system prompt and (role, message) turns into one prompt string.

    style "two": `system + sep`, then `role + ": " + message + sep_i` per answered turn, where sep_i
    alternates between `sep` (after the user) and `sep2` (after the assistant); an unanswered turn
    (message None) ends the prompt with `role + ":"`, which is where generation starts.
    style "plain": the system text, then each answered message followed by its separator; roles
    are not written.
    """

    name: str
    system: str
    roles: tuple[str, str]
    style: Literal["two", "plain"]
    sep: str
    sep2: str

    def prompt(self, messages: Sequence[Message]) -> str:
        if isinstance(messages, (str, bytes)) or not all(
            isinstance(m, (tuple, list)) and len(m) == 2 and isinstance(m[1], (str, type(None))) for m in messages
        ):
            raise ValueError(f"messages must be a list of (role, message or None) pairs, got {messages!r}")
        separators = (self.sep, self.sep2)
        if self.style == "two":
            text = self.system + self.sep
            for i, (role, message) in enumerate(messages):
                text += f"{role}: {message}{separators[i % 2]}" if message else f"{role}:"
            return text
        text = self.system
        for i, (_, message) in enumerate(messages):
            if message:
                text += message + separators[i % 2]
        return text

    def single_turn(self, question: str) -> str:
        """The prompt for one user question, ready for the assistant's answer."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"question must be a non-empty string, got {question!r}")
        return self.prompt([(self.roles[0], question), (self.roles[1], None)])


_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

TEMPLATES: dict[str, ConversationTemplate] = {
    "vicuna_v1": ConversationTemplate("vicuna_v1", _VICUNA_SYSTEM, ("USER", "ASSISTANT"), "two", " ", "</s>"),
    "llava_v1": ConversationTemplate("llava_v1", _LLAVA_SYSTEM, ("USER", "ASSISTANT"), "two", " ", "</s>"),
    # LLaVA leaves sep2 unset here (it is never reached in a single turn); "\n" keeps multi-turn defined.
    "plain": ConversationTemplate("plain", "", ("", ""), "plain", "\n", "\n"),
}
TEMPLATES["v1"] = TEMPLATES["vicuna_v1"]  # LLaVA's own alias


def get_template(name: str) -> ConversationTemplate:
    if not isinstance(name, str) or name not in TEMPLATES:
        raise ValueError(f"unknown conversation template {name!r}; available: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[name]
