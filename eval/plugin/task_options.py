"""Give our model the task options lmms-eval would give its built-in `llava` model.

lmms-eval keys per-model task options by the `--model` name (`lmms_eval_specific_kwargs.<name>`,
`model_specific_generation_kwargs.<name>`); any other name gets the `default` entry. Under our own
model name, a task would silently prompt differently than it prompts `llava`. Each request carries
the task's bound `doc_to_visual`, so the task object and its raw option tables are reachable: this
module re-reads them under the name we follow and, where they differ, rebuilds the prompt from a
shallow copy of the task (the task itself is never modified).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


@dataclass
class KeyedTask:
    task: Any  # the task as lmms-eval built it
    rekeyed: Any = None  # a copy holding the followed model's prompt options, if they differ
    generation: dict = field(default_factory=dict)  # generation options keyed by the followed name

    @property
    def source(self):
        """The task whose doc_to_text / doc_to_visual give what the followed model would see."""
        return self.rekeyed if self.rekeyed is not None else self.task


class TaskOptions:
    def __init__(self, follow: str | None):
        self.follow = follow or None
        self._seen: dict[int, KeyedTask | None] = {}

    def keyed(self, doc_to_visual) -> KeyedTask | None:
        """The options of the task behind `doc_to_visual` as the followed model sees them (None: as given)."""
        task = getattr(doc_to_visual, "__self__", None)
        if self.follow is None or task is None or not hasattr(task, "config"):
            return None
        if id(task) not in self._seen:
            self._seen[id(task)] = self._key(task)
        return self._seen[id(task)]

    def _key(self, task) -> KeyedTask | None:
        config = task.config
        prompt_table = getattr(config, "lmms_eval_specific_kwargs", None)
        generation_table = getattr(config, "model_specific_generation_kwargs", None)
        prompt = prompt_table.get(self.follow) if isinstance(prompt_table, dict) else None
        generation = generation_table.get(self.follow) if isinstance(generation_table, dict) else None
        if prompt is None and generation is None:
            return None
        keyed = KeyedTask(task=task, generation=dict(generation or {}))
        if prompt is not None and prompt != getattr(task, "lmms_eval_specific_kwargs", None):
            keyed.rekeyed = copy.copy(task)
            keyed.rekeyed.lmms_eval_specific_kwargs = prompt
        return keyed

    def prompt(self, keyed: KeyedTask, context: str, doc) -> str:
        """The context the followed model would have received instead of `context`."""
        if keyed.rekeyed is None:
            return context
        if context != keyed.task.doc_to_text(doc):
            raise ValueError(
                f"task {keyed.task.config.task!r} has {self.follow!r}-specific prompt options, but its prompt holds more "
                "than doc_to_text (few-shot examples or a system instruction), so it cannot be rebuilt; "
                "pass task_options_as= (empty) to use the options lmms-eval chose"
            )
        return keyed.rekeyed.doc_to_text(doc)
