"""The one way the efficiency tools time code: `torch.utils.benchmark.Timer`, after untimed warm-up calls.

    timing = measure(lambda: model(**inputs), warmup=3, min_runs=20)
    timing.median_ms, timing.q1_ms, timing.q3_ms, timing.runs, timing.calls

`Timer.blocked_autorange` runs the call in blocks: it grows a block tenfold until reading the clock
(and, on a GPU, the device synchronisation the timer does before each reading) costs under 0.01 % of
it, or until the block outlasts `min_run_time`. One block is one timed run; its time per call is one
sample. `measure` asks for at least `min_runs` runs and `min_run_time` seconds of them, at the thread
count torch uses now, and reports the median and quartiles of the samples.

Cost: a block lasts at least ~10^4 times the clock's own cost, about 0.1 s on a GPU (where each reading
synchronises) and a few ms on a CPU, so a fast call's measurement takes about `min_runs` such blocks.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch.utils.benchmark import Measurement

MS_PER_S = 1e3
DEFAULT_WARMUP = 1
DEFAULT_MIN_RUNS = 5
DEFAULT_MIN_RUN_TIME_S = 0.2  # torch.utils.benchmark's own default for blocked_autorange


@dataclass(frozen=True)
class Timing:
    """Per-call milliseconds: the median and quartiles over `runs` timed runs of `calls` calls in all."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    runs: int
    calls: int

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_measurements(cls, measurements: Sequence[Measurement]) -> Timing:
        """Pools the runs of `Measurement`s of one statement (each run normalised to one call)."""
        samples = [seconds * MS_PER_S for measurement in measurements for seconds in measurement.times]
        if not samples:
            raise ValueError("no timed runs to summarise")
        q1, median, q3 = quartiles(samples)
        calls = sum(measurement.number_per_run * len(measurement.raw_times) for measurement in measurements)
        return cls(median_ms=median, q1_ms=q1, q3_ms=q3, runs=len(samples), calls=calls)


def quartiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3), linearly interpolated like `Measurement` (torch.quantile) computes them."""
    if len(samples) == 1:  # statistics.quantiles needs two points before Python 3.13
        return samples[0], samples[0], samples[0]
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, median, q3


def measure(
    fn: Callable[[], object],
    *,
    warmup: int = DEFAULT_WARMUP,
    min_runs: int = DEFAULT_MIN_RUNS,
    min_run_time: float = DEFAULT_MIN_RUN_TIME_S,
) -> Timing:
    """Times `fn()` after `warmup` untimed calls: at least `min_runs` runs and `min_run_time` seconds."""
    if warmup < 0 or min_runs < 1 or min_run_time < 0:
        raise ValueError(
            f"need warmup >= 0, min_runs >= 1, min_run_time >= 0; got {warmup}, {min_runs}, {min_run_time}"
        )
    import torch  # here, not at the top: the command lines answer --help without loading torch
    from torch.utils.benchmark import Timer

    for _ in range(warmup):
        fn()  # untimed: compilation, CUDA-graph capture and allocator growth happen in these calls
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    measurements = [timer.blocked_autorange(min_run_time=min_run_time)]
    while (runs := sum(len(m.raw_times) for m in measurements)) < min_runs:
        # A slow call fills min_run_time in fewer runs than asked: ask again for the missing runs' time.
        # The block-size estimate then finds the same block (its overhead rule holds there), so the
        # missing time is about the missing runs.
        last = measurements[-1]
        missing_seconds = (min_runs - runs) * last.median * last.number_per_run
        measurements.append(timer.blocked_autorange(min_run_time=missing_seconds))
    return Timing.from_measurements(measurements)


def interleaved(calls: dict[str, Callable[[], object]], rounds: int, **options) -> dict[str, list[Timing]]:
    """Times each call in `rounds` alternating blocks (a, b, c, a, b, c, ...; each block one `measure`
    with `options`), so a slow spell of a shared machine hits every call: name -> a Timing per round."""
    blocks: dict[str, list[Timing]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            blocks[name].append(measure(call, **options))
    return blocks


def first_call(call: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """(result, wall-clock seconds) of one call, the device's queued work included (a first call's
    compilation, graph capture or kernel build shows here, where `measure` leaves it to the warm-up)."""
    import time

    import torch

    start = time.perf_counter()
    result = call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def verdict(best: float, worst: float, limit: float) -> str:
    """A target read against a spread: "met" only when even its worst end is within `limit`, "not met"
    when even its best end is beyond it, "within noise" when the spread straddles the limit."""
    return "met" if worst <= limit else "not met" if best > limit else "within noise"


def pooled(blocks: Sequence[Timing]) -> dict:
    """Medians and quartiles over the medians of blocks timed apart (each block's median is one sample)."""
    q1, median, q3 = round_quartiles([block.median_ms for block in blocks])
    return {"median_ms": median, "q1_ms": q1, "q3_ms": q3, "blocks": len(blocks)}


def paired_ratio(numerator: Sequence[Timing], denominator: Sequence[Timing]) -> dict:
    """numerator / denominator of two calls timed in alternating blocks, one ratio per round from its
    adjacent pair (a slow spell of a shared machine hits both blocks of a pair): the median over rounds,
    and the quartiles as its spread (best, worst)."""
    ratios = sorted(n.median_ms / d.median_ms for n, d in zip(numerator, denominator, strict=True))
    best, median, worst = round_quartiles(ratios)
    return {"median": median, "best": best, "worst": worst, "per_round": ratios}


def round_quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of a few per-round values, by statistics' default (exclusive) method: with few
    rounds it spreads wider than the inclusive one, so a spread read from it errs towards "noise"."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, statistics.median(values), q3


def use_device(device: torch.device) -> None:
    """Makes `device` the current accelerator: the benchmark timer synchronises the current one."""
    import torch

    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


def add_arguments(
    parser: argparse.ArgumentParser, *, repeats: int, warmup: int, min_run_time: float = DEFAULT_MIN_RUN_TIME_S
) -> None:
    """--repeats, --warmup and --min-run-time, the same in every command line that times."""
    parser.add_argument(
        "--repeats",
        type=int,
        default=repeats,
        help="at least this many timed runs per measurement (default %(default)s)",
    )
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls first (default %(default)s)")
    parser.add_argument(
        "--min-run-time",
        type=float,
        default=min_run_time,
        metavar="SECONDS",
        help="at least this many seconds of timed runs per measurement (default %(default)s)",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.repeats < 1 or args.warmup < 0 or args.min_run_time < 0:
        parser.error(
            f"need --repeats >= 1, --warmup >= 0 and --min-run-time >= 0; "
            f"got {args.repeats}, {args.warmup} and {args.min_run_time}"
        )


def options(args: argparse.Namespace) -> dict:
    """`measure`'s keyword arguments from the parsed --repeats, --warmup and --min-run-time."""
    return {"warmup": args.warmup, "min_runs": args.repeats, "min_run_time": args.min_run_time}
