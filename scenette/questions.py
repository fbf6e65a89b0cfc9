"""Scenette questions: six types with one-word answers, each mirroring a real benchmark's skill.

* existence  (POPE):     "Is there a red star in the image?" yes/no; negatives drawn three ways:
                          random (any absent colour-shape pair), popular (among the most frequent pairs
                          overall), adversarial (a present object with one attribute swapped)
* colour     (GQA attr): "What colour is the triangle?" (the only triangle)
* shape      (GQA attr): "What shape is the blue object?" (the only blue object)
* count      (VQAv2):    "How many shapes / stars / green shapes are there?" -> 0..6
* position   (GQA rel):  left or right of the image centre; quadrant of the image
* reading    (TextVQA):  "What is written on the sign?" -> the digit or letter
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from .glyphs import GLYPHS
from .scene import COLOUR_WEIGHTS, COLOURS, SHAPE_WEIGHTS, SHAPES, Scene, _rng

QUESTION_TYPES: tuple[str, ...] = ("existence", "colour", "shape", "count", "position", "reading")
CATEGORIES: dict[str, tuple[str, ...]] = {
    "existence": ("random", "popular", "adversarial"),
    "colour": ("colour",),
    "shape": ("shape",),
    "count": ("total", "subset"),
    "position": ("left-right", "quadrant"),
    "reading": ("glyph",),
}
POPULAR_TOP_K = 3  # a "popular" negative is one of the 3 most frequent absent pairs
POSITION_MARGIN = 14  # an object's centre must be this far (one patch) from a dividing line
PLURALS = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "cross": "crosses",
    "diamond": "diamonds",
}
_PAIR_FREQUENCY = {(c, s): wc * ws for c, wc in zip(COLOURS, COLOUR_WEIGHTS) for s, ws in zip(SHAPES, SHAPE_WEIGHTS)}


@dataclass(frozen=True)
class Question:
    type: str
    category: str
    question: str
    answer: str
    scene_seed: int

    def to_dict(self) -> dict:
        return asdict(self)


def _pick(rng: np.random.Generator, options):
    options = sorted(options)
    return options[int(rng.integers(len(options)))] if options else None


def existence(scene: Scene, rng, category: str, want_yes: bool) -> Question | None:
    present = {(o.colour, o.shape) for o in scene.objects}
    if want_yes:
        pair = _pick(rng, present)
    else:
        absent = set(_PAIR_FREQUENCY) - present
        if category == "random":
            pool = absent
        elif category == "popular":
            pool = sorted(absent, key=lambda p: (-_PAIR_FREQUENCY[p], p))[:POPULAR_TOP_K]
        elif category == "adversarial":
            pool = {p for p in absent if any(p[0] == c or p[1] == s for c, s in present)}
        else:
            raise ValueError(f"unknown existence category {category!r}; allowed: {CATEGORIES['existence']}")
        pair = _pick(rng, pool)
    if pair is None:
        return None
    colour, shape = pair
    return Question(
        "existence", category, f"Is there a {colour} {shape} in the image?", "yes" if want_yes else "no", scene.seed
    )


def colour(scene: Scene, rng, category: str = "colour") -> Question | None:
    counts = Counter(o.shape for o in scene.objects)
    shape = _pick(rng, [s for s, n in counts.items() if n == 1])
    if shape is None:
        return None
    answer = next(o.colour for o in scene.objects if o.shape == shape)
    return Question("colour", category, f"What colour is the {shape}?", answer, scene.seed)


def shape(scene: Scene, rng, category: str = "shape") -> Question | None:
    counts = Counter(o.colour for o in scene.objects)
    name = _pick(rng, [c for c, n in counts.items() if n == 1])
    if name is None:
        return None
    answer = next(o.shape for o in scene.objects if o.colour == name)
    return Question("shape", category, f"What shape is the {name} object?", answer, scene.seed)


def count(scene: Scene, rng, category: str) -> Question | None:
    if category == "total":
        return Question("count", category, "How many shapes are there?", str(len(scene.objects)), scene.seed)
    if category != "subset":
        raise ValueError(f"unknown count category {category!r}; allowed: {CATEGORIES['count']}")
    present_only = rng.random() < 0.75  # mostly ask about things that are there; sometimes the answer is 0
    if rng.random() < 0.5:
        name = _pick(rng, {o.shape for o in scene.objects} if present_only else SHAPES)
        n = sum(o.shape == name for o in scene.objects)
        return Question("count", category, f"How many {PLURALS[name]} are there?", str(n), scene.seed)
    name = _pick(rng, {o.colour for o in scene.objects} if present_only else COLOURS)
    n = sum(o.colour == name for o in scene.objects)
    return Question("count", category, f"How many {name} shapes are there?", str(n), scene.seed)


def position(scene: Scene, rng, category: str) -> Question | None:
    pairs = Counter((o.colour, o.shape) for o in scene.objects)
    middle = scene.size / 2
    candidates = []
    for o in scene.objects:
        cx, cy = o.centre
        clear_x = abs(cx - middle) >= POSITION_MARGIN
        clear_y = abs(cy - middle) >= POSITION_MARGIN
        if pairs[(o.colour, o.shape)] == 1 and clear_x and (clear_y or category == "left-right"):
            candidates.append(o)
    if not candidates:
        return None
    o = candidates[int(rng.integers(len(candidates)))]
    cx, cy = o.centre
    side = "left" if cx < middle else "right"
    if category == "left-right":
        text, answer = f"Is the {o.colour} {o.shape} on the left or the right?", side
    elif category == "quadrant":
        text, answer = f"Which quadrant is the {o.colour} {o.shape} in?", f"{'top' if cy < middle else 'bottom'}-{side}"
    else:
        raise ValueError(f"unknown position category {category!r}; allowed: {CATEGORIES['position']}")
    return Question("position", category, text, answer, scene.seed)


def reading(scene: Scene, rng, category: str = "glyph") -> Question | None:
    return Question("reading", category, "What is written on the sign?", scene.sign.glyph, scene.seed)


def make_question(
    scene: Scene, qtype: str, category: str, rng: np.random.Generator, want_yes: bool | None = None
) -> Question | None:
    """One question of `qtype`/`category` about `scene`, or None if the scene cannot pose it."""
    if qtype == "existence":
        return existence(scene, rng, category, bool(rng.random() < 0.5) if want_yes is None else want_yes)
    makers = {"colour": colour, "shape": shape, "count": count, "position": position, "reading": reading}
    if qtype not in makers:
        raise ValueError(f"unknown question type {qtype!r}; allowed: {', '.join(QUESTION_TYPES)}")
    return makers[qtype](scene, rng, category)


def question_rng(scene_seed: int, turn: int = 0) -> np.random.Generator:
    return _rng(0x0A5C, scene_seed, turn)


def answer_vocabulary() -> list[str]:
    """Every answer any question can have."""
    answers = {"yes", "no", *COLOURS, *SHAPES, *(str(n) for n in range(7)), "left", "right", *GLYPHS}
    answers |= {f"{v}-{h}" for v in ("top", "bottom") for h in ("left", "right")}
    return sorted(answers)


def all_question_texts() -> list[str]:
    """Every question text the generator can produce (for building the vocabulary)."""
    texts = ["How many shapes are there?", "What is written on the sign?"]
    for c in COLOURS:
        texts += [f"What shape is the {c} object?", f"How many {c} shapes are there?"]
        for s in SHAPES:
            texts += [
                f"Is there a {c} {s} in the image?",
                f"Is the {c} {s} on the left or the right?",
                f"Which quadrant is the {c} {s} in?",
            ]
    for s in SHAPES:
        texts += [f"What colour is the {s}?", f"How many {PLURALS[s]} are there?"]
    return texts
