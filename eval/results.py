"""The results tree and how a table value is read from it.

    results/<model>/<method>/<setting>/<benchmark>/
        benchmark.json            what ran and which numbers count (written by the launcher)
        command.txt               every command run here, with its date
        responses/                per-sample answers (resume)
        <model_id>/<date>_results.json, <date>_samples_<task>.jsonl   lmms-eval's output
        submissions/              files for evaluation servers / the video judge
        server_score.json         {"value": 78.5, "source": "..."}: a server's score, entered by hand
        judged.json               video QA: the GPT judge's accuracy and score

<setting> is `full` (no pruning), `n<T>_r<r>` (T visual tokens, important ratio r) or `n<T>` for
methods without a ratio; runs with --limit get `_limit<N>` so they never mix with full runs. r and N are
written exactly (`number_text`: the shortest digits that read back as the same number, no exponent), so
r = 0.4999999 never shares n64_r0.5 with r = 0.5; names written before (`:g`, six digits) parse as before. Extra model
arguments (the launcher's `--model-arg KEY=VALUE`: method or model-family options) follow as `+KEY=VALUE`,
sorted by key, so a run with options never shares a folder with one without them:

    n455_r0.5+frame_cls=false+video_split=even+video_token_num=455      (Video-LLaVA VisPruner, paper recipe)
    n64_limit2+dtype=bfloat16

Values are written as URL quoting would (`/` -> `%2F`, `+` -> `%2B`), so every name parses back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, unquote

from efficiency.command import ResultFileError, read_json

SETTING = re.compile(r"^(?:full|n(?P<tokens>\d+)(?:_r(?P<ratio>[0-9.]+))?)(?:_limit(?P<limit>[0-9.]+))?$")
OPTION = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)=(?P<value>[^+/]*)$")


def number_text(value: float) -> str:
    """`value` exactly, as setting names and model arguments write it: the shortest digits that read back as
    the same float, without an exponent (0.5, 0.4999999, 1, 0.00001, 1234567). Values that `:g` (six
    significant digits) wrote exactly come out as it wrote them, so older folder names stay the same."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    text = format(Decimal(repr(value + 0.0)), "f")  # + 0.0: -0.0 is 0
    return text.rstrip("0").rstrip(".") if "." in text else text


def setting_name(method: str, tokens: int | None, ratio: float | None, limit: float | None = None,
                 options: dict[str, str] | None = None) -> str:  # fmt: skip
    """The setting folder's name; `options`: extra model arguments {key: value}, written `+key=value` sorted."""
    name = "full" if method == "none" else f"n{tokens}" + ("" if ratio is None else f"_r{number_text(ratio)}")
    name = name if limit is None else f"{name}_limit{number_text(limit)}"
    return name + "".join(f"+{key}={quote(str(value), safe='')}" for key, value in sorted((options or {}).items()))


def split_setting(name: str) -> tuple[str, dict[str, str]] | None:
    """(the name without its options, {key: value} of its `+key=value` options), or None if an option is malformed."""
    base, *items = name.split("+")
    options = {}
    for item in items:
        match = OPTION.match(item)
        if not match:
            return None
        options[match["key"]] = unquote(match["value"])
    return base, options


def parse_setting(name: str) -> tuple[int | None, float | None, float | None] | None:
    """(tokens, ratio, limit) of a setting folder name, or None if it is not one; its options: setting_options."""
    split = split_setting(name)
    match = SETTING.match(split[0]) if split else None
    if not match:
        return None
    tokens, ratio, limit = match.group("tokens", "ratio", "limit")
    return (int(tokens) if tokens else None, float(ratio) if ratio else None, float(limit) if limit else None)


def setting_options(name: str) -> dict[str, str]:
    """The extra model arguments a setting folder name carries ({} for none, or for a name that is no setting)."""
    split = split_setting(name) if parse_setting(name) else None
    return split[1] if split else {}


def completed_results(folder: Path) -> list[Path]:
    """lmms-eval result files under a benchmark folder, oldest first (names start with the date)."""
    return sorted(folder.rglob("*_results.json"), key=lambda p: p.name)


@dataclass
class Run:
    """One benchmark folder: its values by column label (None: not available yet) and where they came from."""

    benchmark: str
    label: str
    values: dict[str, float | None] = field(default_factory=dict)
    source: str = "local"
    note: str = ""


def read_benchmark(folder: Path) -> Run | None:
    """The benchmark folder's values; None if it is no benchmark folder (no benchmark.json). A file that
    cannot be used (not JSON, without the keys its kind needs) is a ResultFileError naming it."""
    spec_file = folder / "benchmark.json"
    if not spec_file.is_file():
        return None
    spec = read_json(spec_file, ("name", "label"), "a benchmark description (eval/benchmarks.py)")
    run = Run(spec["name"], spec["label"])
    server_score = folder / "server_score.json"
    if server_score.is_file():
        entry = read_json(server_score, ("value",), 'a server score {"value": ..., "source": ...}')
        if not _is_number(entry["value"]):
            raise ResultFileError(f"{server_score}: value must be a number, got {entry['value']!r}")
        run.values[run.label], run.source, run.note = float(entry["value"]), "server", entry.get("source", "")
        return run
    if spec.get("judged"):
        judged = folder / "judged.json"
        entry = (
            read_json(judged, ("accuracy", "score"), "the judge's summary (eval/judge.py)") if judged.is_file() else {}
        )
        run.values[f"{run.label} Acc"] = entry.get("accuracy")
        run.values[f"{run.label} Score"] = entry.get("score")
        run.source = "judge" if judged.is_file() else "awaiting judge"
        run.note = entry.get("judge_model", "run python -m eval.judge on this folder")
        return run
    files = completed_results(folder)
    if spec.get("metrics") and files:
        results = read_json(files[-1], ("results",), "an lmms-eval results file")["results"]
        if not isinstance(results, dict):
            raise ResultFileError(f"{files[-1]}: 'results' is not a JSON object; not an lmms-eval results file")
        run.values[run.label] = _mean_metric(results, spec["metrics"], spec.get("scale", 100.0))
        for label, task, metric in spec.get("extra", []):
            run.values[label] = _mean_metric(results, [[task, metric]], spec.get("scale", 100.0))
        return run
    run.values[run.label] = None
    run.source = "awaiting server" if spec.get("server") else "missing"
    run.note = spec.get("server") or "no completed run"
    return run


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mean_metric(results: dict, pairs, scale: float) -> float | None:
    values = []
    for task, metric in pairs:
        entry = results.get(task)
        value = entry.get(f"{metric},none") if isinstance(entry, dict) else None
        if not _is_number(value):
            return None
        values.append(float(value))
    return scale * sum(values) / len(values)


@dataclass
class Row:
    model: str
    method: str
    setting: str
    tokens: int | None
    ratio: float | None
    runs: dict[str, Run] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)  # extra model arguments (`+key=value` in the setting)


def scan(root: Path) -> list[Row]:
    """Every <model>/<method>/<setting> under `root` that holds at least one benchmark folder."""
    rows = []
    for setting_dir in sorted(root.glob("*/*/*")):
        parsed = parse_setting(setting_dir.name) if setting_dir.is_dir() else None
        if parsed is None:
            continue
        row = Row(setting_dir.parent.parent.name, setting_dir.parent.name, setting_dir.name, parsed[0], parsed[1],
                  options=setting_options(setting_dir.name))  # fmt: skip
        for bench_dir in sorted(p for p in setting_dir.iterdir() if p.is_dir()):
            run = read_benchmark(bench_dir)
            if run is not None:
                row.runs[run.benchmark] = run
        if row.runs:
            rows.append(row)
    return rows
