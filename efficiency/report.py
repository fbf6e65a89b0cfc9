"""Tables, targets and a plot from a latency results file (`efficiency.latency`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import tables, timing
from .command import atomic_write, atomic_write_text
from .tables import Column

MIB = 2**20
GIGA = 1e9
# The targets: selection + scoring at most 1 % of the pruned time to first token (on a GPU);
# pruned time to first token within 5 % of the oracle's; batched prefill speed-up at 64 tokens at
# least 85 % of the FLOPs-ideal speed-up.
OVERHEAD_LIMIT, ORACLE_LIMIT, SPEEDUP_FLOOR, SPEEDUP_TOKENS = 0.01, 0.05, 0.85, 64


def excess(measured: dict, oracle: dict, limit: float = ORACLE_LIMIT) -> dict:
    """How much slower than the oracle: the ratio of medians - 1 and its spread from the quartiles (best:
    q1 / oracle q3, worst: q3 / oracle q1). "met" only when even the worst is within `limit`, "not met"
    when even the best is beyond it, "within noise" otherwise (`met` is True only for "met")."""
    worst = measured["q3_ms"] / oracle["q1_ms"] - 1
    best = measured["q1_ms"] / oracle["q3_ms"] - 1
    verdict = timing.verdict(best, worst, limit)
    return {"excess": measured["median_ms"] / oracle["median_ms"] - 1, "best": best, "worst": worst,
            "verdict": verdict, "met": verdict == "met"}  # fmt: skip


def _index(result: dict) -> dict:
    return {(c["method"], c["tokens_per_image"]): c for c in result["cases"]}


def targets(result: dict) -> dict:
    """VisPruner's measured values against the targets, per budget (the speed-up target is at 64)."""
    cases = _index(result)
    full = cases.get(("none", result["settings"]["patches_per_image"]))
    largest = str(max(result["settings"]["batch"]))
    out = {
        "on_gpu": result["hardware"]["device"] != "cpu",
        "selection_overhead": [],
        "ttft_vs_oracle": [],
        "prefill_speedup": [],
    }
    for (method, tokens), case in sorted(cases.items(), key=lambda item: -item[0][1]):
        if method != "vispruner":
            continue
        ttft = case["ttft"]["median_ms"]
        if case["scoring"] is not None and case["selection"] is not None:
            share = (case["scoring"]["median_ms"] + case["selection"]["median_ms"]) / ttft
            out["selection_overhead"].append(
                {"tokens": tokens, "share_of_ttft": share, "limit": OVERHEAD_LIMIT, "met": share <= OVERHEAD_LIMIT}
            )
        oracle = cases.get(("oracle", tokens))
        if oracle is not None:
            out["ttft_vs_oracle"].append(
                {"tokens": tokens, "limit": ORACLE_LIMIT, **excess(case["ttft"], oracle["ttft"])}
            )
        if full is not None:
            measured = case["throughput"][largest]["prompts_per_s"] / full["throughput"][largest]["prompts_per_s"]
            ideal = full["flops"]["prefill"] / case["flops"]["prefill"]
            entry = {
                "tokens": tokens,
                "batch": int(largest),
                "measured": measured,
                "flops_ideal": ideal,
                "fraction_of_ideal": measured / ideal,
            }
            if tokens == SPEEDUP_TOKENS:
                entry.update(floor=SPEEDUP_FLOOR, met=measured / ideal >= SPEEDUP_FLOOR)
            out["prefill_speedup"].append(entry)
    return out


def _median(name: str) -> Callable[[dict], float | None]:
    return lambda case: None if case[name] is None else case[name]["median_ms"]


def _iqr(name: str) -> Callable[[dict], float]:
    return lambda case: case[name]["q3_ms"] - case[name]["q1_ms"]


def _overhead(case: dict) -> float | None:
    if case["scoring"] is None or case["selection"] is None:
        return None
    return case["scoring"]["median_ms"] + case["selection"]["median_ms"]


def case_columns(batches: list[str]) -> list[Column]:
    return [
        Column("method", "method"),
        Column("visual tokens", "visual_tokens"),
        Column("TTFT ms", _median("ttft"), ".1f"),
        Column("TTFT IQR ms", _iqr("ttft"), ".1f"),
        Column("image features ms", _median("image_features"), ".1f"),
        Column("scoring + selection ms", _overhead, ".2f"),
        Column("decode ms/token", "decode_ms_per_token", ".2f"),
        Column("POPE end to end ms", _median("end_to_end"), ".1f"),
        Column("KV cache MiB", lambda case: case["kv_cache_bytes"] / MIB, ".1f"),
        Column("peak GPU GiB", "peak_memory_gib", ".2f"),
        Column("prefill GFLOPs", lambda case: case["flops"]["prefill"] / GIGA, ".1f"),
        *[Column(f"prompts/s b={b}", lambda case, b=b: case["throughput"][b]["prompts_per_s"], ".2f") for b in batches],
    ]


def _protocol(settings: dict) -> str:
    """How each number was timed (files written before the shared timer hold no min_run_time_s)."""
    runs = f"medians (quartiles in the JSON) of at least {settings['repeats']} timed runs"
    if "min_run_time_s" in settings:
        runs += f" and {settings['min_run_time_s']:g} s per measurement (torch.utils.benchmark blocks)"
    return f"{runs} after {settings['warmup']} warm-up"


def markdown(result: dict) -> str:
    settings, hardware = result["settings"], result["hardware"]
    batches = [str(b) for b in settings["batch"]]
    lines = [
        f"{settings['description']}; {settings['dtype']}, {settings['attn_implementation']}; "
        f"{hardware['device']} ({hardware['cpu']}, torch threads: {hardware['cpu_threads']}), "
        f"torch {hardware['torch']}, "
        f"transformers {hardware['transformers']}; {hardware['date']}; {_protocol(settings)}; "
        f"load average before/after: {_load(result)}",
        "",
        tables.markdown(result["cases"], case_columns(batches)),
    ]
    found = result.get("targets") or targets(result)
    lines += ["", f"Targets (VisPruner; {'GPU' if found['on_gpu'] else 'CPU: the targets are stated for a GPU'}):", ""]
    for row in found["selection_overhead"]:
        lines.append(
            f"* T={row['tokens']}: scoring + selection = {row['share_of_ttft']:.2%} of TTFT (target <= 1%): "
            f"{'met' if row['met'] else 'not met'}"
        )
    for row in found["ttft_vs_oracle"]:
        spread = f" (spread {row['best']:+.1%} .. {row['worst']:+.1%})" if "best" in row else ""
        lines.append(
            f"* T={row['tokens']}: TTFT {row['excess']:+.1%}{spread} vs the same-token oracle (target <= +5%): "
            f"{row.get('verdict', 'met' if row['met'] else 'not met')}"
        )
    for row in found["prefill_speedup"]:
        verdict = f" (target >= 85% at T=64): {'met' if row['met'] else 'not met'}" if "met" in row else ""
        lines.append(
            f"* T={row['tokens']}: prefill speed-up at batch {row['batch']} {row['measured']:.2f}x "
            f"of a FLOPs-ideal {row['flops_ideal']:.2f}x = {row['fraction_of_ideal']:.0%}{verdict}"
        )
    return "\n".join(lines)


def _load(result: dict) -> str:
    load = result.get("load_average_1_5_15_min", {})
    return " / ".join("-" if load.get(k) is None else f"{load[k][0]:.2f}" for k in ("before", "after"))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = result["settings"]
    largest = str(max(settings["batch"]))
    full = _index(result).get(("none", settings["patches_per_image"]))
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    methods = [m for m in dict.fromkeys(c["method"] for c in result["cases"]) if m != "none"]
    for method in methods:
        rows = sorted((c for c in result["cases"] if c["method"] == method), key=lambda c: c["visual_tokens"])
        tokens = [c["visual_tokens"] for c in rows]
        style = dict(marker="o", linestyle="--" if method == "oracle" else "-", label=method)
        left.plot(tokens, [c["ttft"]["median_ms"] for c in rows], **style)
        right.plot(tokens, [c["throughput"][largest]["prompts_per_s"] for c in rows], **style)
    if full is not None:
        left.axhline(full["ttft"]["median_ms"], color="grey", linestyle=":", label=f"none ({full['visual_tokens']})")
        right.axhline(full["throughput"][largest]["prompts_per_s"], color="grey", linestyle=":", label="none")
        ideal = sorted((c for c in result["cases"] if c["method"] == "vispruner"), key=lambda c: c["visual_tokens"])
        if ideal:
            base = full["throughput"][largest]["prompts_per_s"] * full["flops"]["prefill"]
            right.plot(
                [c["visual_tokens"] for c in ideal],
                [base / c["flops"]["prefill"] for c in ideal],
                color="black",
                linestyle=":",
                marker="x",
                label="FLOPs-ideal (vispruner)",
            )
    left.set(xlabel="visual tokens", ylabel="time to first token (ms)", title="Time to first token, batch 1")
    right.set(xlabel="visual tokens", ylabel="prompts / s", title=f"Prefill throughput, batch {largest}")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    hardware = result["hardware"]
    title = f"{settings['shape']} ({settings['dtype']}) on {hardware['device']}, {hardware['date'][:10]}"
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=120))
    plt.close(figure)


def render(result: dict, json_path: Path) -> None:
    """Write the Markdown table and the plot beside the JSON results."""
    atomic_write_text(json_path.with_suffix(".md"), markdown(result) + "\n")
    plot(result, json_path.with_suffix(".png"))
    print(f"wrote {json_path.with_suffix('.md')} and {json_path.with_suffix('.png')}")
