"""The cells of the Scenette sweep (eval/scenette.py): which options a method runs with on this
model, where each cell's result lives, and when a stored result may be reused."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from efficiency.command import atomic_write_json
from scenette.prompt import TEMPLATE

from .results import setting_name
from .scenette_report import BENCHMARK, UNAVAILABLE, read_cell, read_unavailable

GROUP = BENCHMARK  # the lmms-eval group of the Scenette tasks, and every cell file's "benchmark"
CONV_TEMPLATE = TEMPLATE.name  # the conversation Scenette-LLaVA is trained and evaluated with
REFERENCE_DEPTH = 32  # LLaVA-1.5-7B's language model: the layer defaults of in-LLM methods refer to it


@dataclass
class Cell:
    method: str  # "none": the unpruned model
    budget: int | None
    options: dict = field(default_factory=dict)  # every option the method runs with (defaults included)
    adapted: dict = field(default_factory=dict)  # options moved from their defaults to fit this model
    reason: str | None = None  # why the method cannot run at this budget on this model

    def path(self, output: Path, per_type: int | None) -> Path:
        setting = setting_name(self.method, self.budget, self.options.get("important_ratio"), per_type)
        return output / self.method / f"{setting}.json"


def fit(method: str, budget: int, model) -> Cell:
    """The method with its defaults on `model`, except layer positions published for LLaVA-1.5-7B's
    32-layer language model that this one lacks: those move to the same relative depth. A cell
    that still cannot run (e.g. no published schedule for the budget) carries the reason."""
    import llava
    from llava.pruning import create_pruner

    adapted = {}
    try:
        pruner = create_pruner(method, budget)
        depth = model.config.text_config.num_hidden_layers
        if "layers" in pruner.options and not _fits(pruner, depth):
            adapted["layers"] = tuple(round(layer * depth / REFERENCE_DEPTH) for layer in pruner.options["layers"])
        llava.apply_pruning(model, method, budget, **adapted)
        options = dict(model.pruning_config.options)
    except ValueError as error:
        return Cell(method, budget, reason=str(error))
    finally:
        llava.remove_pruning(model)
    return Cell(method, budget, options, adapted)


def _fits(pruner, depth: int) -> bool:
    try:
        pruner.check_depth(depth)
    except ValueError:
        return False
    return True


def plan(args, model) -> list[Cell]:
    """The unpruned cell, then every method at every budget (largest budget first)."""
    return [Cell("none", None)] + [fit(method, budget, model) for budget in args.budgets for method in args.methods]


def checkpoint_id(folder: Path) -> str:
    """Digest of a checkpoint's configs and weights: results of a retrained model never mix with old ones."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


SETTING_KEYS = ("benchmark", "method", "visual_token_num", "options", "adapted", "per_type", "limit", "checkpoint",
                "conv_template")  # fmt: skip


def settings(cell: Cell, args, checkpoint: str) -> dict:
    """What a cell's result depends on (SETTING_KEYS); a stored cell is reused only when these match."""
    values = (GROUP, cell.method, cell.budget, cell.options, cell.adapted, args.per_type, args.limit, checkpoint,
              CONV_TEMPLATE)  # fmt: skip
    return json.loads(json.dumps(dict(zip(SETTING_KEYS, values))))  # tuples as lists, as read back from the file


def stored(path: Path, expected: dict) -> tuple[dict | None, list[str]]:
    """The finished cell at `path` (None if there is none) and the settings in which it differs from `expected`.
    A file there that is not a finished Scenette cell is a ResultFileError naming it (and it is left alone)."""
    if not path.exists():
        return None, []
    record = read_cell(path)
    return record, sorted(key for key, value in expected.items() if record.get(key) != value)


def set_aside(path: Path) -> Path:
    """--rerun keeps the old result beside the new one (<setting>.before-<time>.json; no table reads it)."""
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    target = path.with_name(f"{path.stem}.before-{stamp}.json")
    number = 1
    while target.exists():  # two reruns within a second
        target, number = path.with_name(f"{path.stem}.before-{stamp}-{number}.json"), number + 1
    path.rename(target)
    return target


def record_unavailable(output: Path, cells: list[Cell], args, checkpoint: str) -> None:
    """Add the cells that cannot run, with the reasons, to <output>/unavailable.json (the table's n/a rows)."""
    known = read_unavailable(output)
    for cell in cells:
        if cell.reason:
            key = cell.path(Path(), args.limit).with_suffix("").as_posix()
            known[key] = {"method": cell.method, "visual_token_num": cell.budget, "per_type": args.per_type,
                          "checkpoint": checkpoint, "reason": cell.reason}  # fmt: skip
    atomic_write_json(output / UNAVAILABLE, known)
