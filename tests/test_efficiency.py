"""FLOPs accounting (the paper's cells; the exact count against torch's FLOP counter), the latency smoke run,
the result tables, the hardware record, and command lines that answer --help without loading torch."""

import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

import llava
from efficiency import baselines, cases, flops, hardware, latency, paper, report, selection
from efficiency.flops import decode_flops, flop_counter, prefill_flops
from efficiency.shapes import POPE_PROMPT, build_model, shape
from efficiency.timing import Timing
from support import REPO

# Settings that fit the tiny shape (3 vision layers, 4 decoder layers, 64 patches per image).
OPTIONS = {"fastv": {"layer": 2}, "pdrop": {"layers": (1, 3)}, "sparsevlm": {"layers": (0, 2), "schedule": (12, 5)}}
BUDGET = {"tome": 32}


def test_paper_flops_cells_reproduced_at_the_budgets_behind_them():
    rows = paper.reproduce_table()
    for row in rows:  # every FLOPs cell, to the table's precision, at the v1 budget that produced it
        assert round(row["flops_t_at_v1_tokens"], 1) == row["paper_flops_t"], row
    # The v2 labels 640 / 160 do not give the cells: the rows are v1's 720- and 145-token rows.
    labelled = {(r["method"], r["label_tokens"]): r for r in rows}
    assert round(labelled["vispruner", 640]["flops_t_at_label"], 1) == 10.4
    assert round(labelled["none", 2880]["flops_t_at_label"], 2) == 43.56
    assert paper.vision_flops() / 1e12 == pytest.approx(0.381, abs=5e-4)  # per 336 px crop


def test_paper_storage_column():
    assert paper.storage_mib(1) == 0.5  # 2 x 32 layers x 4096 x 2 bytes per visual token
    rows = {(r["method"], r["label_tokens"]): r for r in paper.reproduce_table()}
    assert rows["none", 2880]["storage_mib_at_label"] == rows["none", 2880]["paper_storage_mb"] == 1440
    assert rows["vispruner", 640]["storage_mib_at_v1_tokens"] == rows["vispruner", 640]["paper_storage_mb"] == 360
    assert rows["vispruner", 160]["storage_mib_at_label"] == rows["vispruner", 160]["paper_storage_mb"] == 80


def test_paper_llava15_claim():
    reductions = {r["tokens"]: r for r in paper.llava15_reductions()}
    assert round(reductions[32]["reduction"], 3) == 0.901  # the abstract's "-91 %" is closest to 32 tokens
    assert round(reductions[64]["reduction_language_model"], 3) == 0.891


@pytest.fixture(scope="module")
def tiny_model():
    preset = shape("tiny")
    return preset, build_model(preset.config, torch.device("cpu"), torch.float32)


def _inputs(preset, images, batch):
    """`batch` prompts of `images` images each."""
    return cases.prompt_batch(replace(preset, images=images), batch, torch.device("cpu"), torch.float32, POPE_PROMPT)


@pytest.mark.parametrize("method", ["none", *llava.list_methods()])
def test_exact_flops_match_the_flop_counter(tiny_model, method):
    preset, model = tiny_model
    tokens = None if method == "none" else BUDGET.get(method, 16)
    llava.remove_pruning(model)
    if method != "none":
        llava.apply_pruning(model, method, tokens, **OPTIONS.get(method, {}))
    try:
        for images, batch in ((1, 1), (2, 2)):  # several images per prompt, batched prompts
            inputs = _inputs(preset, images, batch)
            with torch.inference_mode(), flop_counter() as counter:
                model(**inputs, logits_to_keep=1)
            options = OPTIONS.get(method, {})
            expected = prefill_flops(preset.config, method, tokens, images=images, batch=batch, **options)
            assert expected.total == pytest.approx(counter.get_total_flops(), rel=0.02), (method, images, batch)
    finally:
        llava.remove_pruning(model)


@pytest.mark.parametrize("method", ["none", "fastv"])
def test_exact_flops_all_logits_and_first_decode_step(tiny_model, method):
    preset, model = tiny_model
    options = OPTIONS.get(method, {})
    if method != "none":
        llava.apply_pruning(model, method, 16, **options)
    try:
        inputs = _inputs(preset, 1, 1)
        with torch.inference_mode():
            with flop_counter() as counter:
                output = model(**inputs, use_cache=True)  # all logits
            expected = prefill_flops(preset.config, method, 16, logits="all", **options)
            assert expected.total == counter.get_total_flops()
            step = torch.ones(1, 1, dtype=torch.long)
            mask = torch.cat([inputs["attention_mask"], step], dim=1)
            with flop_counter() as counter:
                model(input_ids=step, attention_mask=mask, past_key_values=output.past_key_values, use_cache=True)
            assert decode_flops(preset.config, expected) == counter.get_total_flops()
    finally:
        llava.remove_pruning(model)


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every line of the Markdown tables in `markdown`, header and rule lines included."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("|")]  # fmt: skip


@pytest.mark.slow
def test_latency_smoke_writes_results_and_resumes(tmp_path):
    output = tmp_path / "smoke.json"
    smoke = ["--smoke", "--tokens", "16", "--output", str(output)]
    latency.main([*smoke, "--methods", "none", "oracle"])
    with pytest.raises(SystemExit):  # never silently overwritten
        latency.main([*smoke, "--methods", "none"])
    with pytest.raises(SystemExit):  # resuming with other timing settings would mix protocols
        latency.main([*smoke, "--methods", "none", "oracle", "--repeats", "2", "--resume"])
    latency.main([*smoke, "--methods", *latency.METHODS, "--resume"])
    result = json.loads(output.read_text())
    assert [(c["method"], c["tokens_per_image"]) for c in result["cases"]] == [
        ("none", 64),
        ("oracle", 16),
        ("vispruner", 16),
        ("fastv", 16),
        ("visionzip", 16),
        ("random", 16),
    ]
    assert result["hardware"]["device"] == "cpu" and result["settings"]["dtype"] == "float32"
    assert result["settings"]["min_run_time_s"] == 0 and result["settings"]["repeats"] == 1
    assert len(result["load_average_1_5_15_min"]["before"]) == 3
    for case in result["cases"]:
        for timed in (case["ttft"], case["end_to_end"], case["throughput"]["2"]):
            assert 0 < timed["q1_ms"] <= timed["median_ms"] <= timed["q3_ms"] and timed["calls"] >= timed["runs"] >= 1
        assert set(case["throughput"]) == {"1", "2"}
        assert case["kv_cache_bytes"] == case["expected_kv_cache_bytes"]  # the accounting's cache = the real one
        assert (case["selection"] is None) == (case["method"] in ("none", "fastv"))
    vispruner = next(c for c in result["cases"] if c["method"] == "vispruner")
    assert vispruner["selection"]["non_view_operators"] > 0
    assert {"selection_overhead", "ttft_vs_oracle", "prefill_speedup"} <= set(result["targets"])
    rows = table_rows(output.with_suffix(".md").read_text())
    assert [row[0] for row in rows[2:]] == list(latency.METHODS)  # one line per case, in order
    assert output.with_suffix(".png").stat().st_size > 0


def test_report_renders_results_of_the_shared_timer_and_of_files_written_before_it():
    result = json.loads((REPO / "results/efficiency/cpu-small.json").read_text())
    result["settings"].pop("min_run_time_s", None)  # as files written before the shared timer are
    text = report.markdown(result)
    rows = table_rows(text)
    assert rows[0][:4] == ["method", "visual tokens", "TTFT ms", "TTFT IQR ms"]
    assert len(rows) == 2 + len(result["cases"])
    ttft = result["cases"][0]["ttft"]
    assert rows[2][:4] == ["none", "576", f"{ttft['median_ms']:.1f}", f"{ttft['q3_ms'] - ttft['q1_ms']:.1f}"]
    assert rows[2][5] == "-" and rows[2][9] == "-"  # no scoring for the unpruned model; no GPU memory on a CPU
    repeats, warmup = result["settings"]["repeats"], result["settings"]["warmup"]
    assert f"at least {repeats} timed runs after {warmup} warm-up" in text
    result["settings"]["min_run_time_s"] = 0.2
    assert f"at least {repeats} timed runs and 0.2 s per measurement" in report.markdown(result)


def timing_of(median_ms: float) -> Timing:
    return Timing(median_ms=median_ms, q1_ms=median_ms - 1, q3_ms=median_ms + 1, runs=5, calls=5)


def test_selection_table_shows_medians_and_ratios_of_one_run():
    medians = {"tower_all_layers": 200.0, "tower_to_feature_layer_with_cls_row": 190.0, "cls_row": 0.1,
               "select_T64": 2.0, "compiled_select_T64": 0.5}  # fmt: skip
    row = selection.result_row(1, {name: timing_of(ms) for name, ms in medians.items()}, [64])
    assert row["select_T64_ms"] == 2.0 and row["timings"]["select_T64"]["q3_ms"] == 3.0
    assert row["select_share_of_tower"] == {64: 0.01} and row["compiled_speedup"] == {64: 4.0}
    rows = table_rows(selection.markdown({"results": [row]}))
    assert rows[0][-2:] == ["select_T64", "compiled_select_T64"] and rows[2][1] == "200.00"
    assert rows[3] == ["batch", "select T=64 / tower", "compiled speed-up T=64"] and rows[5] == ["1", "1.00%", "4.00"]


def test_baselines_table_shows_the_share_of_the_unpruned_run():
    unpruned = baselines.UNPRUNED
    found = {"image_encoding": {unpruned: timing_of(100.0), "vispruner T=64": timing_of(90.0)},
             "language_model_prefill": {unpruned: timing_of(50.0), "fastv T=64": timing_of(20.0)}}  # fmt: skip
    found = {where: {name: t.as_dict() for name, t in timings.items()} for where, timings in found.items()}
    rows = table_rows(baselines.markdown(found))[2:]
    assert rows[1] == ["image encoding", "vispruner T=64", "90.0", "2.0", "90.0%"]
    assert rows[3] == ["LM prefill (8 layers)", "fastv T=64", "20.0", "2.0", "40.0%"]


def test_exact_flops_table():
    rows = flops.exact_table(shape("llava-1.5-7b").config, ["none", "vispruner"], [64])
    cells = table_rows(flops.markdown(rows))
    assert cells[2][:2] == ["none", "-"] and cells[3][:2] == ["vispruner", "64"]
    assert cells[3][7] == f"{rows[1]['total'] / 1e9:.1f}" and cells[3][8] == f"{rows[1]['reduction']:.1%}"


def test_the_hardware_record():
    found = hardware.describe(torch.device("cpu"))
    assert {"device", "cpu", "cpu_threads", "cpu_logical_cores", "cpu_usable_cores", "torch", "transformers", "cuda",
            "gpu_driver", "date"} <= set(found)  # fmt: skip
    assert found["device"] == "cpu" and found["cpu_threads"] == torch.get_num_threads() and found["gpu_driver"] is None
    assert 1 <= found["cpu_usable_cores"] <= found["cpu_logical_cores"] and len(hardware.load_average()) == 3
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            hardware.gpu_slug()


INVOCATION = re.compile(r"-m (efficiency\.\w+)(?: (paper|exact)\b)?(.*)")
FLAG = re.compile(r"--[a-z][a-z-]*")


@pytest.mark.slow
@pytest.mark.parametrize("script", ["cpu.sh", "gpu.sh", "flops.sh"])
def test_every_flag_the_scripts_pass_exists(script):
    """A dry check of scripts/efficiency/*.sh (gpu.sh cannot run here): each module and flag they call exists."""
    text = (REPO / "scripts/efficiency" / script).read_text().replace("\\\n", " ")
    checked = 0
    for module, command, rest in INVOCATION.findall(text):
        usage = subprocess.run([sys.executable, "-m", module, *filter(None, [command]), "--help"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
        flags = set(FLAG.findall(rest))
        assert not {flag for flag in flags if flag not in usage}, (module, command)
        checked += len(flags)
    assert checked >= 1


def test_selection_scaling_times_both_routes_and_keeps_the_previous_tokens(tmp_path, capsys):
    from efficiency import selection_scaling

    out = tmp_path / "scaling.json"
    selection_scaling.main(["--sizes", "80", "160", "--tokens", "16", "--width", "32", "--rounds", "2", "--repeats",
                            "1", "--min-run-time", "0", "--threads", "1", "--output", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    assert [row["N"] for row in result["results"]] == [80, 160]
    assert all(row["same_tokens"] and row["rounds_gather_ms"] > 0 for row in result["results"])
    assert all(row["compiled_same_tokens"] and row["compiled_ms"] > 0 for row in result["results"])
    assert all(len(row["select_over_matmul"]["per_round"]) == 2 for row in result["results"])  # interleaved
    printed = capsys.readouterr().out
    assert "target: select exponent over N = 80..160 <= 2.3" in printed
    assert "target: compile=True exponent over N = 80..160 <= 2.3" in printed


def test_oracle_ttft_pairs_blocks_and_feeds_vispruners_tokens(tmp_path, capsys):
    from efficiency import oracle_ttft

    out = tmp_path / "oracle.json"
    oracle_ttft.main(["--shape", "tiny", "--tokens", "16", "--rounds", "2", "--repeats", "1", "--warmup", "0",
                      "--min-run-time", "0", "--threads", "1", "--output", str(out)])  # fmt: skip
    (row,) = json.loads(out.read_text())["results"]
    for arm in ("vispruner", "vispruner_compile"):
        assert len(row[arm]["per_round"]) == 2 and row[arm]["verdict"] in ("met", "not met", "within noise")
    printed = capsys.readouterr()
    assert "VisPruner(compile=True)" in printed.out and "same-token" not in printed.err


def test_the_same_token_oracle_keeps_exactly_vispruners_tokens():
    model = build_model(shape("tiny").config, torch.device("cpu"), torch.float32, "sdpa")
    inputs = cases.prompt_batch(shape("tiny"), 1, torch.device("cpu"), torch.float32, POPE_PROMPT)
    kept = cases.vispruner_kept(model, 16, inputs["pixel_values"])
    oracle = cases.make_pruner("oracle", 16, model.config, kept)
    assert oracle.requires == frozenset()  # no [CLS] row
    vision = llava.models.clip.encode(model.model.vision_tower, inputs["pixel_values"], -2)
    assert torch.equal(oracle.select(vision), kept)
