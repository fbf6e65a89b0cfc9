"""How VisPruner's selection grows with the number of tokens N, against its own similarity matmul.

    python -m efficiency.selection_scaling --threads 1 --output results/efficiency/selection-scaling-cpu.json
    python -m efficiency.selection_scaling --device cuda --dtype float16 --warmup 2

For each N (default 576 = LLaVA-1.5's image, up to 4608 = 8 video frames of 576 selected jointly) it
times, side by side per N: the R x R similarity matmul of the residual pool (the floor of an exact
VisPruner), `select` now, the selection as it was before the neighbour windows (`previous_select`:
the same rounds, each reading its even x odd block with one 3-D gather, kept here as the baseline),
the rounds alone by each of `llava.pruning.diversity`'s two plain-torch routes (where they cross is
`NEIGHBOUR_POOL`), and, with `--compile` (the default), `compiled_select`: VisPruner's
`compile=True`, which on the CPU runs the rounds in the fused C++ loop (built on first use) and on
CUDA replays them as one CUDA graph (traced once per N; `--compile-up-to` bounds it; the
graph is recorded on its second call, so give CUDA `--warmup 2`).
Features are clustered like a vision tower's (a mixture of `--clusters` centres plus noise, L2 scale
irrelevant), C = 1024 as CLIP ViT-L; random weights are not needed.

Each call runs once untimed (its seconds recorded as `first_call_s`: compilation shows there), then
all are timed in `--rounds` alternating blocks, so a slow spell of a shared machine hits every call.
Reported per N: medians and quartiles over the blocks; select / matmul, one ratio per round from its
adjacent pair of blocks, with the quartiles over rounds as its spread; and the time-vs-N exponent of
each selection (least squares on log time vs log N). A target line says "met" only when even the
spread's worst ratio is within the target, "not met" when even its best is above, and "within noise"
otherwise.
"""

from __future__ import annotations

import argparse
import math

from . import tables, timing
from .command import add_device_arguments, add_output_argument, measure_and_report
from .hardware import describe, machine_name
from .tables import Column

SIZES = (576, 1152, 2304, 2880, 4608)
TARGETS = {576: 2.0, 2880: 3.0}  # select / its own matmul (issue 19)
EXPONENT_TARGET = 2.3
ROUND_SIZE = 8


def clustered_features(batch: int, tokens: int, width: int, clusters: int, seed: int, torch):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(batch, clusters, width, generator=generator)
    assign = torch.randint(0, clusters, (batch, tokens), generator=generator)
    noise = torch.randn(batch, tokens, width, generator=generator)
    return centres.gather(1, assign[..., None].expand(-1, -1, width)) + 0.5 * noise


def previous_select(features, cls_attention, visual_token_num: int, important_ratio: float):
    """`select` before issue 19: one 3-D advanced-index gather of the even x odd block per round."""
    import torch
    import torch.nn.functional as F

    from llava.pruning.vispruner import attention_order, split_budget

    num_important, num_diverse = split_budget(visual_token_num, important_ratio)
    order = attention_order(cls_attention)
    pool = order[:, num_important:]
    unit = F.normalize(features, dim=-1)
    pool_unit = unit.gather(1, pool[..., None].expand(-1, -1, unit.shape[-1]))
    position = previous_rounds(pool_unit @ pool_unit.transpose(1, 2), num_diverse)
    kept = torch.cat([order[:, :num_important], pool.gather(1, position)], dim=1)
    return kept.sort(dim=-1).values


def previous_rounds(similarity, keep: int):
    """The rounds before issue 19, as the published loop runs them: positions [B, keep] into the pool."""
    import torch

    batch, size, _ = similarity.shape
    batch_index = torch.arange(batch)[:, None, None]
    position, remaining = torch.arange(size).expand(batch, size), size
    while (drop := min(ROUND_SIZE, remaining - keep)) > 0:
        even, odd = position[:, 0::2], position[:, 1::2]
        drop = min(drop, even.shape[1])
        best = similarity[batch_index, even[:, :, None], odd[:, None, :]].amax(dim=-1)
        by_redundancy = torch.argsort(best, dim=-1, descending=True, stable=True)
        position = torch.cat([even.gather(1, by_redundancy[:, drop:]), odd], dim=1)
        remaining -= drop
    return position


def run(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    from llava.pruning import fused_rounds
    from llava.pruning.diversity import diverse_positions
    from llava.pruning.vispruner import compiled_select, select, split_budget

    device = torch.device(args.device)
    timing.use_device(device)
    dtype = getattr(torch, args.dtype)
    if args.compile and device.type == "cpu":
        fused_rounds.load()  # the one-time build stays out of the timings

    rows = []
    num_important, _ = split_budget(args.tokens, args.ratio)
    for size in args.sizes:
        features = clustered_features(1, size, args.width, args.clusters, seed=size, torch=torch)
        features = features.to(device=device, dtype=dtype)
        attention = torch.rand(1, size, generator=torch.Generator().manual_seed(size + 1)).to(device)
        pool_unit = F.normalize(features[:, : size - num_important], dim=-1)
        similarity = pool_unit @ pool_unit.transpose(1, 2)
        keep = args.tokens - num_important
        calls = {
            "matmul": lambda u=pool_unit: u @ u.transpose(1, 2),
            "select": lambda f=features, a=attention: select(f, a, args.tokens, args.ratio),
            "rounds_neighbours": lambda s=similarity, k=keep: diverse_positions(s, k, neighbour_pool=0),
        }
        compiled = args.compile and size <= args.compile_up_to
        if compiled:
            calls["compiled"] = lambda f=features, a=attention: compiled_select(f, a, args.tokens, args.ratio)
        if size <= args.previous_up_to:
            calls["previous"] = lambda f=features, a=attention: previous_select(f, a, args.tokens, args.ratio)
            calls["rounds_gather"] = lambda s=similarity, k=keep, n=size: diverse_positions(s, k, neighbour_pool=n)
        with torch.inference_mode():
            first = {name: timing.first_call(fn, device) for name, fn in calls.items()}  # compiles, warms up
            kept = {name: result for name, (result, _) in first.items()}
            same = torch.equal(kept["select"], kept["previous"]) if "previous" in kept else None
            compiled_same = torch.equal(kept["compiled"], kept["select"]) if compiled else None
            blocks = timing.interleaved(calls, args.rounds, **timing.options(args))
        first_call_s = {name: seconds for name, (_, seconds) in first.items()}
        row = {"N": size, "same_tokens": same, "compiled_same_tokens": compiled_same, "first_call_s": first_call_s}
        row["timings"] = {name: timing.pooled(measured) for name, measured in blocks.items()}
        row.update({f"{name}_ms": pooled["median_ms"] for name, pooled in row["timings"].items()})
        row["select_over_matmul"] = timing.paired_ratio(blocks["select"], blocks["matmul"])
        if compiled:
            row["compiled_over_matmul"] = timing.paired_ratio(blocks["compiled"], blocks["matmul"])
        rows.append(row)
        print({k: v for k, v in row.items() if k not in ("timings", "first_call_s")}, flush=True)
    return {
        "benchmark": "vispruner selection vs N (clustered features, batch 1)",
        "tokens": args.tokens,
        "important_ratio": args.ratio,
        "width": args.width,
        "dtype": args.dtype,
        "rounds": args.rounds,
        "hardware": describe(device),
        "timing": timing.options(args),
        "results": rows,
        "exponent": {name: exponent(rows, f"{name}_ms") for name in ("select", "compiled", "previous", "matmul")},
    }


def exponent(rows: list[dict], key: str) -> float | None:
    """Least-squares slope of log(time) against log(N) over the rows that have `key`."""
    points = [(math.log(row["N"]), math.log(row[key])) for row in rows if key in row]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def exponent_spread(rows: list[dict], name: str) -> tuple[float, float]:
    """The exponent's range from the quartiles: the smaller N at their q3 and the larger at their q1 (the
    flattest fit), and the other way round (the steepest)."""
    rows = [row for row in rows if name in row["timings"]]
    half = len(rows) // 2

    def fit(small: str, large: str) -> float:
        points = [{"N": r["N"], "t": r["timings"][name][small if i < half else large]} for i, r in enumerate(rows)]
        return exponent(points, "t")

    return fit("q3_ms", "q1_ms"), fit("q1_ms", "q3_ms")


def markdown(report: dict) -> str:
    compiled = any("compiled" in row["timings"] for row in report["results"])
    columns = [
        Column("N", "N"),
        Column("matmul ms", "matmul_ms", ".2f"),
        Column("select ms", "select_ms", ".2f"),
        *([Column("compile=True ms", lambda r: r.get("compiled_ms", float("nan")), ".2f")] if compiled else []),
        Column("previous ms", lambda r: r.get("previous_ms", float("nan")), ".2f"),
        Column("rounds: gather route ms", lambda r: r.get("rounds_gather_ms", float("nan")), ".2f"),
        Column("rounds: neighbour windows ms", "rounds_neighbours_ms", ".2f"),
        Column("select / matmul (quartiles over rounds)", lambda r: _ratio_text(r["select_over_matmul"])),
        *([Column("compile=True / matmul", lambda r: _ratio_text(r.get("compiled_over_matmul")))] if compiled else []),
        Column("same tokens as previous", lambda r: _same_text(r["same_tokens"])),
        *([Column("compile=True: same tokens", lambda r: _same_text(r["compiled_same_tokens"]))] if compiled else []),
    ]
    hardware = report["hardware"]
    machine = machine_name(hardware)
    head = f"{report.get('dtype', 'float32')}, T={report['tokens']}, C={report['width']}; {machine}, {hardware['date']}"
    lines = [head, "", tables.markdown(report["results"], columns), ""]
    exponents = report["exponent"]
    lines.append(", ".join(f"exponent {k}: {v:.2f}" for k, v in exponents.items() if v is not None))
    for name, label in (("select", "select"), ("compiled", "compile=True")):
        for row in report["results"]:
            ratio = row.get(f"{name}_over_matmul")
            if row["N"] in TARGETS and ratio is not None:
                target = TARGETS[row["N"]]
                status = timing.verdict(ratio["best"], ratio["worst"], target)
                lines.append(f"target N={row['N']}: {label} <= {target}x its matmul: {status}")
        if exponents.get(name) is None:
            continue
        low, high = exponent_spread(report["results"], name)
        status = timing.verdict(low, high, EXPONENT_TARGET)
        sizes = [row["N"] for row in report["results"] if name in row["timings"]]
        lines.append(
            f"target: {label} exponent over N = {min(sizes)}..{max(sizes)} <= {EXPONENT_TARGET}: {status} "
            f"({exponents[name]:.2f}; from the quartiles {low:.2f} .. {high:.2f})"
        )
    return "\n".join(lines)


def _ratio_text(ratio: dict | None) -> str:
    return "-" if ratio is None else f"{ratio['median']:.2f} ({ratio['best']:.2f} .. {ratio['worst']:.2f})"


def _same_text(same: bool | None) -> str:
    return "-" if same is None else str(same)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arguments(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="token counts N")
    parser.add_argument("--tokens", type=int, default=64, help="visual_token_num T")
    parser.add_argument("--ratio", type=float, default=0.5, help="important_ratio")
    parser.add_argument("--width", type=int, default=1024, help="feature width C (CLIP ViT-L: 1024)")
    parser.add_argument("--clusters", type=int, default=24, help="feature clusters")
    parser.add_argument(
        "--previous-up-to", type=int, default=4608, help="time the previous selection up to this N (it is slow)"
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=True,
        help="also time compile=True (CPU: the fused C++ rounds, needs a C++ compiler, built once; CUDA: "
        "the rounds as one CUDA graph, traced per N, longer as N grows)",
    )  # fmt: skip
    parser.add_argument(
        "--compile-up-to", type=int, default=max(SIZES), metavar="N", help="time compile=True up to this N"
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks of each call (default %(default)s)")
    timing.add_arguments(parser, repeats=1, warmup=0)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if any(size <= args.tokens for size in args.sizes):
        parser.error(f"--sizes must all exceed --tokens ({args.tokens}), got {args.sizes}")
    measure_and_report(parser, args, run, markdown)


if __name__ == "__main__":
    main()
