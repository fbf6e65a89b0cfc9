"""Question sets for the analyses: image/question(/answer) samples from a JSONL file, and scoring.

A JSONL row needs an image and a question; an answer is needed only by the accuracy analyses.

    {"id": "0", "image": "coco/train2017/000000033471.jpg", "question": "Is there a cat?", "answer": "yes"}
    {"id": "...", "image": "...", "conversations": [{"from": "human", "value": "<image>\\nWhat ...?"}, {"from": "gpt", "value": "..."}]}

The second form is LLaVA's instruction data (e.g. the paper's `llava_v1_5_mix1k.jsonl`): the first
human turn is the question and the first model turn the answer. The question may also be given as
`text` or `prompt`; an `<image>` placeholder in it is removed (the model's prompt puts the image
first, as LLaVA's evaluation does). Image paths are relative to `image_folder` (default: the JSONL
file's folder).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw

QUESTION_KEYS = ("question", "text", "prompt")
_PLACEHOLDER = re.compile(r"\s*<image>\s*")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}


@dataclass(frozen=True)
class Sample:
    """One question about one image; `image_source` is a file path or a function drawing the image."""

    id: str
    question: str
    answer: str | None
    image_source: Path | Callable[[], Image.Image]
    meta: dict = field(default_factory=dict, compare=False)

    def image(self) -> Image.Image:
        if callable(self.image_source):
            return self.image_source()
        with Image.open(self.image_source) as image:
            return image.convert("RGB")


def normalize_answer(text: str) -> str:
    """Lower case, inner spaces collapsed, outer spaces and punctuation removed, number words as digits."""
    text = re.sub(r"\s+", " ", text.strip().lower()).strip(" .,;:!?\"'")
    return _NUMBER_WORDS.get(text, text)


def exact_match(prediction: str, target: str) -> float:
    """1.0 when the normalised prediction equals the normalised target (one-word answers), else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(target))


@dataclass
class Dataset:
    """Samples plus how an answer is scored against the reference (`score(prediction, target)`)."""

    name: str
    samples: list[Sample]
    score: Callable[[str, str], float] = exact_match

    def __len__(self) -> int:
        return len(self.samples)

    def head(self, limit: int | None) -> Dataset:
        return self if not limit else Dataset(self.name, self.samples[:limit], self.score)

    def require_answers(self, purpose: str) -> None:
        missing = [s.id for s in self.samples if s.answer is None]
        if missing:
            raise ValueError(
                f"{purpose} needs an answer for every question; dataset {self.name!r} has none for "
                f"{len(missing)} of {len(self.samples)} (first: id {missing[0]!r})"
            )


def load_jsonl(path: str | Path, image_folder: str | Path | None = None, limit: int | None = None) -> Dataset:
    """The samples of a JSONL file (see the module docstring); clear errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dataset file {path}")
    folder = Path(image_folder) if image_folder is not None else path.parent
    samples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if limit and len(samples) >= limit:
                break
            samples.append(_sample(path, number, line, folder))
    if not samples:
        raise ValueError(f"{path} holds no samples")
    return Dataset(path.stem, samples)


def _sample(path: Path, number: int, line: str, folder: Path) -> Sample:
    where = f"{path}, line {number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not JSON ({error})") from None
    if not isinstance(row.get("image"), str):
        raise ValueError(f"{where}: needs an 'image' path (one image per question), got {row.get('image')!r}")
    question, answer = _question_and_answer(row, where)
    image = folder / row["image"]
    if not image.is_file():
        raise FileNotFoundError(f"{where}: image {image} not found (image paths are relative to {folder})")
    identifier = str(row.get("id", row.get("question_id", number)))
    meta = {k: row[k] for k in ("type", "category") if k in row}
    return Sample(identifier, _PLACEHOLDER.sub(" ", question).strip(), answer, image, meta)


def _question_and_answer(row: dict, where: str) -> tuple[str, str | None]:
    if "conversations" in row:
        turns = row["conversations"]
        human = next((t["value"] for t in turns if t.get("from") == "human"), None)
        model = next((t["value"] for t in turns if t.get("from") == "gpt"), None)
        if human is None:
            raise ValueError(f"{where}: 'conversations' has no human turn")
        return human, model
    for key in QUESTION_KEYS:
        if isinstance(row.get(key), str):
            answer = row.get("answer")
            return row[key], None if answer is None else str(answer)
    raise ValueError(f"{where}: needs a question ({', '.join(QUESTION_KEYS)} or 'conversations')")


# A small drawn question set: the smoke-test data, and data for models that come without any.
_COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 90, 210), "yellow": (230, 200, 40)}


def drawn_samples(count: int, size: int = 336, seed: int = 0) -> Dataset:
    """`count` pictures of coloured squares on grey, each asked whether a square of one colour is
    present (answers alternate yes/no). Deterministic from `seed`."""
    samples = [_drawn_sample(index, size, seed) for index in range(count)]
    return Dataset(f"drawn{count}", samples)


def _drawn_sample(index: int, size: int, seed: int) -> Sample:
    g = torch.Generator().manual_seed(seed * 100_003 + index)
    names = list(_COLOURS)
    order = torch.randperm(len(names), generator=g).tolist()
    present = [names[i] for i in order[: 1 + int(torch.randint(0, 3, (1,), generator=g))]]
    boxes = []
    for _ in present:
        x, y = (int(v) for v in torch.randint(0, size - size // 4, (2,), generator=g))
        boxes.append((x, y, x + size // 5, y + size // 5))
    absent = [n for n in names if n not in present]
    pool = present if index % 2 == 0 or not absent else absent
    colour = pool[int(torch.randint(0, len(pool), (1,), generator=g))]

    def draw() -> Image.Image:
        image = Image.new("RGB", (size, size), (150, 150, 150))
        pen = ImageDraw.Draw(image)
        for name, box in zip(present, boxes):
            pen.rectangle(box, fill=_COLOURS[name])
        return image

    answer = "yes" if colour in present else "no"
    return Sample(f"drawn-{index:04d}", f"Is there a {colour} square? Answer with one word.", answer, draw)
