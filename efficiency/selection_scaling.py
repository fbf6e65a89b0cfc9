"""How VisPruner's selection grows with the number of tokens N, against its own similarity matmul.

    python -m efficiency.selection_scaling --threads 1 --output results/efficiency/selection-scaling-cpu.json

For each N (default 576 = LLaVA-1.5's image, up to 4608 = 8 video frames of 576 selected jointly) it
times, side by side per N: the R x R similarity matmul of the residual pool (the floor of an exact
VisPruner), `select` now, the selection as it was before the neighbour windows (`previous_select`:
the same rounds, each reading its even x odd block with one 3-D gather, kept here as the baseline),
the rounds alone by each of `llava.pruning.diversity`'s two plain-torch routes (where they cross is
`NEIGHBOUR_POOL`), and, with `--compile` (the default), `compiled_select`: VisPruner's
`compile=True`, which on the CPU runs the rounds in the fused C++ loop (built on first use).
Features are clustered like a vision tower's (a mixture of `--clusters` centres plus noise, L2 scale
irrelevant), C = 1024 as CLIP ViT-L; random weights are not needed.

Reported per N: medians and quartiles; select / matmul with its spread (quartile ratios); and the
time-vs-N exponent of each selection (least squares on log time vs log N). A target line says "met"
only when even the spread's worst ratio is within the target, "not met" when even its best is above,
and "within noise" otherwise.
"""

from __future__ import annotations

import argparse
import math

from . import tables, timing
from .command import add_device_arguments, add_output_argument, measure_and_report
from .hardware import describe
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

    if args.compile:
        fused_rounds.load()  # the one-time build stays out of the timings

    rows = []
    num_important, _ = split_budget(args.tokens, args.ratio)
    for size in args.sizes:
        features = clustered_features(1, size, args.width, args.clusters, seed=size, torch=torch)
        attention = torch.rand(1, size, generator=torch.Generator().manual_seed(size + 1))
        pool_unit = F.normalize(features[:, : size - num_important], dim=-1)
        similarity = pool_unit @ pool_unit.transpose(1, 2)
        keep = args.tokens - num_important
        calls = {
            "matmul": lambda u=pool_unit: u @ u.transpose(1, 2),
            "select": lambda f=features, a=attention: select(f, a, args.tokens, args.ratio),
            "rounds_neighbours": lambda s=similarity, k=keep: diverse_positions(s, k, neighbour_pool=0),
        }
        if args.compile:
            calls["compiled"] = lambda f=features, a=attention: compiled_select(f, a, args.tokens, args.ratio)
        if size <= args.previous_up_to:
            calls["previous"] = lambda f=features, a=attention: previous_select(f, a, args.tokens, args.ratio)
            calls["rounds_gather"] = lambda s=similarity, k=keep, n=size: diverse_positions(s, k, neighbour_pool=n)
            same = torch.equal(calls["select"](), calls["previous"]())
        else:
            same = None
        compiled_same = torch.equal(calls["compiled"](), calls["select"]()) if args.compile else None
        with torch.inference_mode():
            measured = {name: timing.measure(fn, **timing.options(args)) for name, fn in calls.items()}
        row = {"N": size, "same_tokens": same, "compiled_same_tokens": compiled_same}
        row.update({f"{k}_ms": v.median_ms for k, v in measured.items()})
        row["timings"] = {name: value.as_dict() for name, value in measured.items()}
        row["select_over_matmul"] = spread(measured["select"], measured["matmul"])
        if args.compile:
            row["compiled_over_matmul"] = spread(measured["compiled"], measured["matmul"])
        rows.append(row)
        print({k: v for k, v in row.items() if k != "timings"}, flush=True)
    return {
        "benchmark": "vispruner selection vs N (clustered features, batch 1)",
        "tokens": args.tokens,
        "important_ratio": args.ratio,
        "width": args.width,
        "hardware": describe(torch.device("cpu")),
        "timing": timing.options(args),
        "results": rows,
        "exponent": {name: exponent(rows, f"{name}_ms") for name in ("select", "compiled", "previous", "matmul")},
    }


def spread(numerator, denominator) -> dict:
    """The ratio of medians with its spread: best (q1 / q3) and worst (q3 / q1) quartile ratios."""
    return {
        "median": numerator.median_ms / denominator.median_ms,
        "best": numerator.q1_ms / denominator.q3_ms,
        "worst": numerator.q3_ms / denominator.q1_ms,
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
    half = len(rows) // 2

    def fit(small: str, large: str) -> float:
        points = [{"N": r["N"], "t": r["timings"][name][small if i < half else large]} for i, r in enumerate(rows)]
        return exponent(points, "t")

    return fit("q3_ms", "q1_ms"), fit("q1_ms", "q3_ms")


def verdict(ratio: dict, target: float) -> str:
    if ratio["worst"] <= target:
        return "met"
    if ratio["best"] > target:
        return "not met"
    return "within noise"


def markdown(report: dict) -> str:
    compiled = report["exponent"].get("compiled") is not None
    columns = [
        Column("N", "N"),
        Column("matmul ms", "matmul_ms", ".2f"),
        Column("select ms", "select_ms", ".2f"),
        *([Column("compile=True ms", "compiled_ms", ".2f")] if compiled else []),
        Column("previous ms", lambda r: r.get("previous_ms", float("nan")), ".2f"),
        Column("rounds: gather route ms", lambda r: r.get("rounds_gather_ms", float("nan")), ".2f"),
        Column("rounds: neighbour windows ms", "rounds_neighbours_ms", ".2f"),
        Column("select / matmul (q1/q3 .. q3/q1)", lambda r: _ratio_text(r["select_over_matmul"])),
        *([Column("compile=True / matmul", lambda r: _ratio_text(r["compiled_over_matmul"]))] if compiled else []),
        Column("same tokens as previous", lambda r: "-" if r["same_tokens"] is None else str(r["same_tokens"])),
        *([Column("compile=True: same tokens", lambda r: str(r["compiled_same_tokens"]))] if compiled else []),
    ]
    lines = [tables.markdown(report["results"], columns), ""]
    exponents = report["exponent"]
    lines.append(", ".join(f"exponent {k}: {v:.2f}" for k, v in exponents.items() if v is not None))
    for name, label in (("select", "select"), ("compiled", "compile=True")):
        if exponents.get(name) is None:
            continue
        for row in report["results"]:
            if row["N"] in TARGETS:
                target = TARGETS[row["N"]]
                ratio = verdict(row[f"{name}_over_matmul"], target)
                lines.append(f"target N={row['N']}: {label} <= {target}x its matmul: {ratio}")
        low, high = exponent_spread(report["results"], name)
        status = "met" if high <= EXPONENT_TARGET else "not met" if low > EXPONENT_TARGET else "within noise"
        lines.append(
            f"target: {label} exponent <= {EXPONENT_TARGET}: {status} ({exponents[name]:.2f}; from the quartiles "
            f"{low:.2f} .. {high:.2f})"
        )
    return "\n".join(lines)


def _ratio_text(ratio: dict) -> str:
    return f"{ratio['median']:.2f} ({ratio['best']:.2f} .. {ratio['worst']:.2f})"


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
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=True,
        help="also time compile=True (the fused C++ rounds; needs a C++ compiler, built once)",
    )  # fmt: skip
    timing.add_arguments(parser, repeats=5, warmup=1)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    if args.device not in ("auto", "cpu"):
        parser.error(f"--device: this benchmark runs on the CPU, got {args.device!r}")
    args.device = "cpu"
    if any(size <= args.tokens for size in args.sizes):
        parser.error(f"--sizes must all exceed --tokens ({args.tokens}), got {args.sizes}")
    measure_and_report(parser, args, run, markdown)


if __name__ == "__main__":
    main()
