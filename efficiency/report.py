"""Tables, targets and a plot from a latency results file (`efficiency.latency`)."""
from __future__ import annotations

from pathlib import Path

MIB = 2**20
# The targets: selection + scoring at most 1 % of the pruned time to first token (on a GPU);
# pruned time to first token within 5 % of the oracle's; batched prefill speed-up at 64 tokens at
# least 85 % of the FLOPs-ideal speed-up.
OVERHEAD_LIMIT, ORACLE_LIMIT, SPEEDUP_FLOOR, SPEEDUP_TOKENS = 0.01, 0.05, 0.85, 64


def _index(result: dict) -> dict:
    return {(c["method"], c["tokens_per_image"]): c for c in result["cases"]}


def targets(result: dict) -> dict:
    """VisPruner's measured values against the targets, per budget (the speed-up target is at 64)."""
    cases = _index(result)
    full = cases.get(("none", result["settings"]["patches_per_image"]))
    largest = str(max(result["settings"]["batch"]))
    out = {"on_gpu": result["hardware"]["device"] != "cpu", "selection_overhead": [], "ttft_vs_oracle": [], "prefill_speedup": []}
    for (method, tokens), case in sorted(cases.items(), key=lambda item: -item[0][1]):
        if method != "vispruner":
            continue
        ttft = case["ttft"]["median_ms"]
        if case["scoring"] is not None and case["selection"] is not None:
            share = (case["scoring"]["median_ms"] + case["selection"]["median_ms"]) / ttft
            out["selection_overhead"].append({"tokens": tokens, "share_of_ttft": share, "limit": OVERHEAD_LIMIT,
                                              "met": share <= OVERHEAD_LIMIT})
        oracle = cases.get(("oracle", tokens))
        if oracle is not None:
            excess = ttft / oracle["ttft"]["median_ms"] - 1
            out["ttft_vs_oracle"].append({"tokens": tokens, "excess": excess, "limit": ORACLE_LIMIT, "met": excess <= ORACLE_LIMIT})
        if full is not None:
            measured = case["throughput"][largest]["prompts_per_s"] / full["throughput"][largest]["prompts_per_s"]
            ideal = full["flops"]["prefill"] / case["flops"]["prefill"]
            entry = {"tokens": tokens, "batch": int(largest), "measured": measured, "flops_ideal": ideal,
                     "fraction_of_ideal": measured / ideal}
            if tokens == SPEEDUP_TOKENS:
                entry.update(floor=SPEEDUP_FLOOR, met=measured / ideal >= SPEEDUP_FLOOR)
            out["prefill_speedup"].append(entry)
    return out


def _ms(timing: dict | None) -> str:
    return "-" if timing is None else f"{timing['median_ms']:.1f}"


def markdown(result: dict) -> str:
    settings, hardware = result["settings"], result["hardware"]
    batches = [str(b) for b in settings["batch"]]
    lines = [
        f"{settings['description']}; {settings['dtype']}, {settings['attn_implementation']}; "
        f"{hardware['device']} ({hardware['cpu']}, torch threads: {hardware['cpu_threads']}), torch {hardware['torch']}, "
        f"transformers {hardware['transformers']}; {hardware['date']}; medians of {settings['repeats']} runs after "
        f"{settings['warmup']} warm-up; load average before/after: {_load(result)}",
        "",
        "| method | visual tokens | TTFT ms | image features ms | scoring + selection ms | decode ms/token | "
        f"POPE end to end ms | KV cache MiB | peak GPU GiB | prefill GFLOPs | "
        + " | ".join(f"prompts/s b={b}" for b in batches) + " |",
        "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(batches),
    ]
    for case in result["cases"]:
        overhead = "-"
        if case["scoring"] is not None and case["selection"] is not None:
            overhead = f"{case['scoring']['median_ms'] + case['selection']['median_ms']:.2f}"
        memory = "-" if case["peak_memory_gib"] is None else f"{case['peak_memory_gib']:.2f}"
        throughput = " | ".join(f"{case['throughput'][b]['prompts_per_s']:.2f}" for b in batches)
        lines.append(
            f"| {case['method']} | {case['visual_tokens']} | {_ms(case['ttft'])} | {_ms(case['image_features'])} | "
            f"{overhead} | {case['decode_ms_per_token']:.2f} | {_ms(case['end_to_end'])} | "
            f"{case['kv_cache_bytes'] / MIB:.1f} | {memory} | {case['flops']['prefill'] / 1e9:.1f} | {throughput} |"
        )
    found = result.get("targets") or targets(result)
    lines += ["", f"Targets (VisPruner; {'GPU' if found['on_gpu'] else 'CPU: the targets are stated for a GPU'}):", ""]
    for row in found["selection_overhead"]:
        lines.append(f"* T={row['tokens']}: scoring + selection = {row['share_of_ttft']:.2%} of TTFT (target <= 1%): "
                     f"{'met' if row['met'] else 'not met'}")
    for row in found["ttft_vs_oracle"]:
        lines.append(f"* T={row['tokens']}: TTFT {row['excess']:+.1%} vs the oracle (target <= +5%): {'met' if row['met'] else 'not met'}")
    for row in found["prefill_speedup"]:
        verdict = f" (target >= 85% at T=64): {'met' if row['met'] else 'not met'}" if "met" in row else ""
        lines.append(f"* T={row['tokens']}: prefill speed-up at batch {row['batch']} {row['measured']:.2f}x of a FLOPs-ideal "
                     f"{row['flops_ideal']:.2f}x = {row['fraction_of_ideal']:.0%}{verdict}")
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
            right.plot([c["visual_tokens"] for c in ideal], [base / c["flops"]["prefill"] for c in ideal],
                       color="black", linestyle=":", marker="x", label="FLOPs-ideal (vispruner)")
    left.set(xlabel="visual tokens", ylabel="time to first token (ms)", title="Time to first token, batch 1")
    right.set(xlabel="visual tokens", ylabel="prompts / s", title=f"Prefill throughput, batch {largest}")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    hardware = result["hardware"]
    figure.suptitle(f"{settings['shape']} ({settings['dtype']}) on {hardware['device']}, {hardware['date'][:10]}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def render(result: dict, json_path: Path) -> None:
    """Write the Markdown table and the plot beside the JSON results."""
    json_path.with_suffix(".md").write_text(markdown(result) + "\n")
    plot(result, json_path.with_suffix(".png"))
    print(f"wrote {json_path.with_suffix('.md')} and {json_path.with_suffix('.png')}")
