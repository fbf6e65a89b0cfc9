"""The shared timer (efficiency.timing) and the Markdown table writers (efficiency.tables).

Timings use time.sleep, whose duration does not depend on how busy the CPUs are: a sleep never ends
early, and a loaded machine only adds wake-up latency, so the bounds below are one-sided or generous.
"""

import argparse
import time

import pytest
from torch.utils.benchmark import Measurement, TaskSpec

from efficiency import tables, timing
from efficiency.tables import Column

SLEEP_S = 0.01
WAKE_UP_SLACK_MS = 15  # generous: a loaded 2-core machine delays the wake-up, never the sleep itself


def sleeper(seconds: float):
    return lambda: time.sleep(seconds)


def test_a_known_sleep_is_measured_in_milliseconds_per_call():
    found = timing.measure(sleeper(SLEEP_S), warmup=0, min_runs=3, min_run_time=0)
    assert SLEEP_S * 1e3 <= found.q1_ms <= found.median_ms <= found.q3_ms < SLEEP_S * 1e3 + WAKE_UP_SLACK_MS
    assert found.runs >= 3 and found.calls >= found.runs


def test_relative_cost_of_two_sleeps_measured_side_by_side():
    short = timing.measure(sleeper(SLEEP_S / 2), warmup=0, min_runs=3, min_run_time=0)
    long = timing.measure(sleeper(SLEEP_S * 2), warmup=0, min_runs=3, min_run_time=0)
    assert 2.5 < long.median_ms / short.median_ms < 4.5  # 4x in sleep; wake-up latency pulls it towards 1


def test_at_least_min_runs_even_when_one_call_fills_min_run_time():
    found = timing.measure(sleeper(SLEEP_S), warmup=0, min_runs=4, min_run_time=SLEEP_S / 10)
    assert found.runs >= 4


def test_fast_calls_are_timed_in_blocks_of_many_calls():
    found = timing.measure(lambda: None, warmup=0, min_runs=2, min_run_time=0.05)
    assert found.calls > 10 * found.runs  # torch.utils.benchmark sized the blocks; the clock's cost is amortised
    assert found.median_ms < 1


def test_warmup_calls_are_not_timed():
    calls = []

    def slow_at_first():  # like a call that compiles or captures a CUDA graph the first times
        calls.append(None)
        time.sleep(SLEEP_S * 10 if len(calls) <= 2 else SLEEP_S / 10)

    found = timing.measure(slow_at_first, warmup=2, min_runs=1, min_run_time=0)
    assert found.median_ms < SLEEP_S * 1e3 * 5


def test_quartiles_are_those_of_torch_measurement():
    task = TaskSpec(stmt="fn()", setup="pass")
    blocks = [
        Measurement(number_per_run=2, raw_times=[0.002, 0.004, 0.010, 0.006], task_spec=task),
        Measurement(number_per_run=1, raw_times=[0.0015], task_spec=task),
    ]
    found = timing.Timing.from_measurements(blocks)
    merged = Measurement.merge(blocks)[0]
    assert found.median_ms == pytest.approx(merged.median * 1e3)
    assert found.iqr_ms == pytest.approx(merged.iqr * 1e3)
    assert (found.runs, found.calls) == (5, 9)
    assert timing.quartiles([3.0]) == (3.0, 3.0, 3.0)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="min_runs >= 1"):
        timing.measure(lambda: None, min_runs=0)
    parser = argparse.ArgumentParser()
    timing.add_arguments(parser, repeats=5, warmup=1)
    args = parser.parse_args(["--repeats", "2", "--min-run-time", "0.5"])
    assert timing.options(args) == {"warmup": 1, "min_runs": 2, "min_run_time": 0.5}
    with pytest.raises(SystemExit):
        timing.check_arguments(parser, parser.parse_args(["--repeats", "0"]))


ROWS = [{"method": "none", "tokens": None, "ms": 418.44, "share": None},
        {"method": "vispruner", "tokens": 64, "ms": 100.251, "share": 0.1204}]  # fmt: skip
COLUMNS = [
    Column("method", "method"),
    Column("T", "tokens"),
    Column("TTFT ms", "ms", ".1f"),
    Column("share", "share", ".1%"),
    Column("ms / T", lambda r: r["tokens"] and r["ms"] / r["tokens"], ".2f"),
]


def cells(table: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]


def test_markdown_table_formats_each_column_and_marks_missing_values():
    table = tables.markdown(ROWS, COLUMNS)
    header, rule, *rows = cells(table)
    assert header == ["method", "T", "TTFT ms", "share", "ms / T"]
    assert rows == [["none", "-", "418.4", "-", "-"], ["vispruner", "64", "100.3", "12.0%", "1.57"]]
    assert rule[0].startswith(":") and all(c.endswith(":") for c in rule[1:])  # text left, numbers right
    assert len({len(line) for line in table.splitlines()}) == 1  # columns padded to one width: readable as text


def test_markdown_table_without_rows_keeps_its_header():
    assert cells(tables.markdown([], COLUMNS))[0] == ["method", "T", "TTFT ms", "share", "ms / T"]


def test_markdown_text_prints_cells_as_given_and_aligns_the_columns_asked():
    table = tables.markdown_text(
        ["method", "GQA", "Rel."], [["none", "62.0", "100.0%"], ["vispruner", "sub.", "–"]], [1, 2]
    )
    header, rule, *rows = cells(table)
    assert rows == [["none", "62.0", "100.0%"], ["vispruner", "sub.", "–"]]  # not parsed: 62.0 stays 62.0
    assert rule[0].startswith(":") and all(c.endswith(":") and not c.startswith(":") for c in rule[1:])
    assert len({len(line) for line in table.splitlines()}) == 1


def block(median_ms: float) -> timing.Timing:
    return timing.Timing(median_ms=median_ms, q1_ms=median_ms, q3_ms=median_ms, runs=1, calls=1)


def test_calls_are_timed_in_alternating_blocks():
    order = []
    blocks = timing.interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=3,
                                warmup=0, min_runs=1, min_run_time=0)  # fmt: skip
    assert [len(blocks["a"]), len(blocks["b"])] == [3, 3]
    changes = sum(first != second for first, second in zip(order, order[1:]))
    assert changes == 5  # a-block, b-block, a, b, a, b: never two blocks of one call in a row


def test_a_paired_ratio_takes_each_rounds_pair_so_a_slow_spell_cancels():
    slow = 3.0  # the machine slowed down for round 2: both of its blocks took three times as long
    pruned = [block(11.0), block(11.0 * slow), block(11.0)]
    oracle = [block(10.0), block(10.0 * slow), block(10.0)]
    ratio = timing.paired_ratio(pruned, oracle)
    assert ratio["median"] == pytest.approx(1.1) and ratio["worst"] == pytest.approx(1.1)
    assert timing.pooled(oracle) == {"median_ms": 10.0, "q1_ms": 10.0, "q3_ms": 30.0, "blocks": 3}


@pytest.mark.parametrize(
    ("best", "worst", "verdict"),
    [(1.0, 1.04, "met"), (1.0, 1.05, "met"), (1.04, 1.06, "within noise"), (1.06, 1.2, "not met")],
)
def test_a_target_is_met_only_when_the_whole_spread_is_within_it(best, worst, verdict):
    assert timing.verdict(best, worst, 1.05) == verdict
