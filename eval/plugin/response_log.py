"""Per-sample answers written as they are produced, so an interrupted evaluation resumes.

lmms-eval's own `--use_cache` stores answers only after the model has answered every request of a
run, so a crash loses the whole run. This log appends each batch's answers (flushed and synced) to
`responses.rank<R>.jsonl` in one folder; a later run with the same settings reads every rank's
file and asks the model only for what is missing. Entries are keyed by the model settings, the
task, the document and the exact prompt and generation options, so nothing stale is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def answer_key(settings: dict, task: str, doc_id: Any, prompt: str, generation: dict) -> str:
    payload = json.dumps([settings, task, str(doc_id), prompt, generation], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class ResponseLog:
    def __init__(self, folder: str | os.PathLike, rank: int = 0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"responses.rank{rank}.jsonl"
        self.answers: dict[str, str] = {}
        for existing in sorted(self.folder.glob("responses.rank*.jsonl")):
            self._read(existing)

    def _read(self, path: Path) -> None:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash; its sample is simply asked again
                self.answers[entry["key"]] = entry["response"]

    def get(self, key: str) -> str | None:
        return self.answers.get(key)

    def add(self, entries: list[dict]) -> None:
        """Append entries ({"key", "response", ...}) and make them durable before returning."""
        with self.path.open("a", encoding="utf-8") as handle:
            for entry in entries:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
                self.answers[entry["key"]] = entry["response"]
            handle.flush()
            os.fsync(handle.fileno())
