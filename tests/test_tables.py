"""The paper-layout table: Acc. with MME/20, Rel. against the unpruned row, server cells, paper rows;
and Scenette sweep folders, rendered by the same `python -m eval.tables`."""

import csv
import json
from pathlib import Path

import pytest

from eval import scenette_report, tables
from eval.benchmarks import BENCHMARKS
from eval.results import parse_setting, setting_name, setting_options

MODEL = "llava-v1.5-7b"
SCENETTE_TYPES = ("existence", "colour", "shape", "count", "position", "reading")


def markdown_rows(markdown: str) -> list[list[str]]:
    """The cells of every Markdown table row (header included, the |---| separator not), stripped."""
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("|") and "---" not in line]
    return [[cell.strip() for cell in row] for row in rows]


def lmms_eval_result(folder: Path, task_metrics: dict) -> None:
    """A result file as lmms-eval writes it: <output>/<model id>/<date>_results.json."""
    results = {
        task: {f"{metric},none": value for metric, value in metrics.items()} for task, metrics in task_metrics.items()
    }
    (folder / "run__x").mkdir(parents=True)
    (folder / "run__x" / "20260101_000000_results.json").write_text(json.dumps({"results": results}))


def cell(root, method, setting, bench, task_metrics=None, server=None):
    folder = root / MODEL / method / setting / bench
    folder.mkdir(parents=True)
    (folder / "benchmark.json").write_text(json.dumps(BENCHMARKS[bench].describe()))
    if task_metrics:
        lmms_eval_result(folder, task_metrics)
    if server is not None:
        (folder / "server_score.json").write_text(json.dumps({"value": server, "source": "EvalAI"}))


@pytest.fixture
def results(tmp_path):
    for method, setting, gqa, perception, cognition, pope in (
        ("none", "full", 0.62, 1510.0, 350.0, (0.88, 0.86, 0.84)),
        ("vispruner", "n64_r0.5", 0.55, 1370.0, 300.0, (0.82, 0.80, 0.78)),
    ):
        cell(tmp_path, method, setting, "gqa", {"gqa": {"exact_match": gqa}})
        cell(
            tmp_path,
            method,
            setting,
            "mme",
            {"mme": {"mme_perception_score": perception, "mme_cognition_score": cognition}},
        )
        splits = ("random", "popular", "adversarial")
        cell(tmp_path, method, setting, "pope", {f"pope_paper_{s}": {"pope_f1_score": f} for s, f in zip(splits, pope)})
    cell(tmp_path, "none", "full", "vqav2", server=78.5)
    cell(tmp_path, "vispruner", "n64_r0.5", "vqav2")  # submitted, score not entered yet
    return tmp_path


def test_columns_values_and_summaries(results):
    [table] = tables.build(results)
    assert table.columns == ["VQAv2", "GQA", "POPE", "MME", "MME-cog"]
    base, pruned = table.lines
    assert (base.method, base.tokens, pruned.method, pruned.tokens, pruned.ratio) == (
        "none",
        "all",
        "vispruner",
        "64",
        "0.5",
    )
    assert pruned.values["POPE"] == pytest.approx(80.0) and pruned.values["MME-cog"] == 300.0
    assert base.summary["Acc."] == pytest.approx((78.5 + 62 + 86 + 1510 / 20) / 4)
    assert base.summary["Rel."] == pytest.approx(100.0)
    assert pruned.summary == {"Acc.": None, "Rel.": None}  # VQAv2 still at the server
    markdown = tables.render([table])
    header, *body = markdown_rows(markdown)
    assert header == ["Method", "Tokens", "r", "VQAv2", "GQA", "POPE", "MME", "MME-cog", "Acc.", "Rel."]
    [rule] = [line.strip("|").split("|") for line in markdown.splitlines() if "---" in line]
    assert all(c.startswith(":") for c in rule[:3]) and all(c.endswith(":") and c[0] == "-" for c in rule[3:])
    assert body[1] == ["vispruner", "64", "0.5", "sub.", "55.0", "80.0", "1370.0", "300.0", "–", "–"]


def test_rel_is_the_mean_ratio_to_the_unpruned_row(results):
    folder = results / MODEL / "vispruner" / "n64_r0.5" / "vqav2"
    (folder / "server_score.json").write_text(json.dumps({"value": 72.0}))
    [table] = tables.build(results)
    pruned = table.lines[1]
    ratios = [72.0 / 78.5, 55 / 62, 80 / 86, 1370 / 1510]
    assert pruned.summary["Rel."] == pytest.approx(100 * sum(ratios) / 4)
    assert pruned.summary["Acc."] == pytest.approx((72 + 55 + 80 + 1370 / 20) / 4)
    csv_rows = tables.render([table], "csv").splitlines()
    assert csv_rows[2].startswith(f"{MODEL},vispruner,64,0.5,72,55,80,1370,300,")


def test_paper_rows_follow_matching_rows(results):
    [table] = tables.build(results, paper=True)
    labels = [line.method for line in table.lines]
    assert labels == ["none", "none (paper, LLaVA-1.5-7B)", "vispruner", "vispruner (paper, LLaVA-1.5-7B)"]
    reported = table.lines[3]
    assert reported.values["MME"] == 1369.9 and reported.values["POPE"] == 80.4 and reported.summary["Rel."] == 96.6
    latex = tables.render([table], "latex")
    assert "vispruner (paper, LLaVA-1.5-7B) & 64 & 0.5 & 72.7 & 55.4 & 80.4 & 1369.9 & – & 60.4 & 96.6\\% \\\\" in latex


def test_cli_writes_all_three_formats(results, tmp_path, capsys):
    out = tmp_path / "tables"
    assert tables.main([str(results), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"table_{MODEL}.csv", f"table_{MODEL}.md", f"table_{MODEL}.tex"]
    with pytest.raises(SystemExit):
        tables.main([str(tmp_path / "missing")])


# --- Scenette sweep folders ----------------------------------------------------------------------


def scenette_cell(folder: Path, method: str, budget: int | None, correct: dict, per_type: int = 40, **fields) -> dict:
    """Plant a cell file as eval/scenette.py writes it: `correct` answers per type (of `per_type`, types not
    given: all right); the answers are "right"/"wrong" so two runs can be compared answer by answer."""
    counts = {t: correct.get(t, per_type) for t in SCENETTE_TYPES}
    accuracy = {t: 100 * c / per_type for t, c in counts.items()}
    ratio = 0.5 if method == "vispruner" else None
    record = {
        "benchmark": "scenette", "method": method, "visual_token_num": budget,
        "options": {} if ratio is None else {"important_ratio": ratio}, "adapted": {}, "per_type": per_type,
        "limit": per_type, "checkpoint": "c0ffee", "conv_template": "vicuna_v1", "model": "/models/scenette-llava",
        "visual_tokens": 576, "accuracy": accuracy, "mean": sum(accuracy.values()) / len(accuracy),
        "questions": dict.fromkeys(SCENETTE_TYPES, per_type),
        "answers": {t: ["right"] * c + ["wrong"] * (per_type - c) for t, c in counts.items()},
        "seconds": 10.0, "batch_size": 8, "lmms_eval": "0.7.3",
        "hardware": {"device": "cpu", "cpu": "Test CPU", "cpu_threads": 1, "torch": "2.x", "transformers": "5.x",
                     "date": "2026-01-01T00:00:00+00:00"},
    } | fields  # fmt: skip
    key = scenette_report.cell_key(record)
    (folder / key).parent.mkdir(parents=True, exist_ok=True)
    (folder / f"{key}.json").write_text(json.dumps(record))
    return record


def unavailable(folder: Path, method: str, budget: int, reason: str, per_type: int = 40) -> None:
    path = folder / scenette_report.UNAVAILABLE
    known = json.loads(path.read_text()) if path.is_file() else {}
    known[f"{method}/n{budget}_limit{per_type}"] = {"method": method, "visual_token_num": budget, "per_type": per_type,
                                                    "checkpoint": "c0ffee", "reason": reason}  # fmt: skip
    path.write_text(json.dumps(known))


@pytest.fixture
def scenette_tree(tmp_path):
    """results/scenette (an older folder: no unavailable.json) and one run below it, runs/<time>/."""
    root = tmp_path / "results"
    reference, run = root / "scenette", root / "scenette" / "runs" / "20260101T000000Z"
    for folder, unpruned_count in ((reference, 20), (run, 19)):
        scenette_cell(folder, "none", None, {"count": unpruned_count})
        scenette_cell(folder, "vispruner", 64, {"count": 10, "reading": 30})
        scenette_cell(folder, "tome", 128, {"count": 16})
        scenette_cell(folder, "vispruner", 128, {"count": 16})
    unavailable(run, "tome", 64, "tome cannot merge 576 tokens down to 64")
    (reference / "none" / "full_limit40.before-20251231-000000.json").write_text("{}")  # set aside by --rerun: no cell
    return root


def test_eval_tables_renders_every_scenette_folder_under_the_root(scenette_tree, capsys):
    assert tables.main([str(scenette_tree)]) == 0
    printed = capsys.readouterr().out
    reference, run = printed.split("\n# ")  # one table per sweep folder, the committed one first
    title = "Scenette-LLaVA (scenette-llava), first 40 questions of each type, in"
    assert reference.startswith(f"# {title} {scenette_tree}/scenette/\n")
    assert run.startswith(f"{title} {scenette_tree}/scenette/runs/20260101T000000Z/\n")
    header, *rows = markdown_rows(reference)
    assert header == ["Method", "Tokens", "r", *(t.capitalize() for t in SCENETTE_TYPES), "Acc.", "Rel."]
    assert [row[:3] for row in rows] == [["unpruned", "576", ""], ["tome", "128", ""], ["vispruner", "128", "0.5"],
                                         ["tome", "64", ""], ["vispruner", "64", "0.5"]]  # fmt: skip
    unpruned, tome, _, hole, vispruner = rows
    assert unpruned[3:] == ["100.0", "100.0", "100.0", "50.0", "100.0", "100.0", "91.7", "100.0%"]
    assert vispruner[6] == "25.0" and vispruner[8] == "75.0"
    rel = 100 * (4 + 10 / 20 + 30 / 40) / 6  # mean over types of accuracy / unpruned accuracy
    assert vispruner[10] == f"{rel:.1f}%" and tome[10] == f"{100 * (5 + 16 / 20) / 6:.1f}%"
    assert hole[3:] == ["–"] * 8  # no file and no recorded reason: missing, not n/a
    assert "- tome at 64: no result in this folder." in reference
    assert markdown_rows(run)[4][3:] == ["n/a"] * 8  # the run recorded why tome cannot run at 64
    assert "- tome at 64: n/a (tome cannot merge 576 tokens down to 64)." in run
    assert "- Measured on Test CPU (cpu, torch threads: 1)" in reference


def test_eval_tables_and_the_sweep_share_one_renderer(scenette_tree, tmp_path, capsys):
    run = scenette_tree / "scenette" / "runs" / "20260101T000000Z"
    written = scenette_report.write_report(run)  # what the sweep prints and writes at its end
    assert (run / "table.md").read_text() == written and (run / "relative_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert tables.main([str(run)]) == 0
    printed = capsys.readouterr().out
    assert markdown_rows(printed) == markdown_rows(written)
    assert printed.split("\n", 1)[1] == written.split("\n", 1)[1]  # only the title says where the folder is
    csv_rows = list(csv.DictReader((run / "table.csv").open()))
    assert [(r["model"], r["method"], r["tokens"], r["Count"]) for r in csv_rows][:2] == [
        ("scenette-llava", "unpruned", "576", "47.5"), ("scenette-llava", "tome", "128", "40")]  # fmt: skip
    out = tmp_path / "tables"
    assert tables.main([str(scenette_tree), "--out", str(out), "--format", "csv"]) == 0
    assert len(list(out.glob("table_scenette_*.md"))) == 2 and len(list(out.glob("*.tex"))) == 2
    assert tables.main([str(scenette_tree), "--model", "scenette-llava"]) == 0
    with pytest.raises(SystemExit):
        tables.main([str(scenette_tree), "--model", "other-model"])


def test_no_results_is_an_error_naming_both_layouts(tmp_path, capsys):
    with pytest.raises(SystemExit):
        tables.main([str(tmp_path)])
    assert "a Scenette sweep's <folder>/<method>/<setting>.json" in capsys.readouterr().err


# --- settings with extra model arguments ---------------------------------------------------------


def test_setting_names_carry_extra_model_arguments_and_old_names_parse_as_before():
    video = {"video_token_num": "455", "frame_cls": "false", "video_split": "even"}
    name = setting_name("vispruner", 455, 0.5, None, video)
    assert name == "n455_r0.5+frame_cls=false+video_split=even+video_token_num=455"
    assert parse_setting(name) == (455, 0.5, None) and setting_options(name) == video
    assert name != setting_name("vispruner", 455, 0.5)  # the per-frame run has its own folder
    awkward = setting_name("fastv", 64, None, 2, {"vision_tower": "/ckpt/clip+x", "dtype": "bfloat16"})
    assert awkward == "n64_limit2+dtype=bfloat16+vision_tower=%2Fckpt%2Fclip%2Bx" and "/" not in awkward
    assert setting_options(awkward) == {"dtype": "bfloat16", "vision_tower": "/ckpt/clip+x"}
    assert setting_name("none", None, None, 40, {}) == "full_limit40"
    for old, parsed in (("full", (None, None, None)), ("n64_r0.5", (64, 0.5, None)), ("n64", (64, None, None)),
                        ("n32_r0.75_limit10", (32, 0.75, 10.0)), ("full_limit40", (None, None, 40.0))):  # fmt: skip
        assert parse_setting(old) == parsed and setting_options(old) == {}
    for other in ("full_limit40.before-20251231-000000", "n64+junk", "n64_r0.5+a=b+c", "runs", "n64+a=b/c"):
        assert parse_setting(other) is None and setting_options(other) == {}


def test_rows_with_options_show_them_and_match_the_paper_only_with_the_recipes(tmp_path):
    root, model = tmp_path, "Video-LLaVA-7B-hf"
    protocol = "n455_r0.5+frame_cls=false+video_split=even+video_token_num=455"
    for setting in (protocol, "n455_r0.5", "n455_r0.5+frame_cls=false+video_split=first+video_token_num=455"):
        folder = root / model / "vispruner" / setting / "msvd"
        folder.mkdir(parents=True)
        (folder / "benchmark.json").write_text(json.dumps(BENCHMARKS["msvd"].describe()))
        (folder / "judged.json").write_text(json.dumps({"accuracy": 60.0, "score": 3.5}))
    [table] = tables.build(root, paper=True)
    assert [(line.method, line.options) for line in table.lines] == [
        ("vispruner", ""),
        ("vispruner", "frame_cls=false, video_split=even, video_token_num=455"),
        ("vispruner (paper, Video-LLaVA-7B)", ""),
        ("vispruner", "frame_cls=false, video_split=first, video_token_num=455"),
    ]
    assert table.lines[2].values["MSVD Acc"] == 70.2
    header, *body = markdown_rows(tables.render([table]))
    assert header[:5] == ["Method", "Tokens", "r", "Options", "MSVD Acc"]
    assert body[1][3] == "frame_cls=false, video_split=even, video_token_num=455" and body[1][4] == "60.0"
    assert tables.render([table], "csv").splitlines()[0].startswith("model,method,tokens,ratio,options,MSVD Acc,")
    assert "\\begin{tabular}{llllrr" in tables.render([table], "latex")


def test_family_names_the_paper_table_of_a_model_folder_that_does_not(results, tmp_path, capsys):
    renamed = tmp_path / "renamed"
    (results / MODEL).rename(renamed.mkdir() or renamed / "scenette-llava")
    [table] = tables.build(renamed, paper=True)
    assert not any(line.paper for line in table.lines)  # "scenette-llava" says no paper table
    [table] = tables.build(renamed, paper=True, family="v1_5")
    assert [line.method for line in table.lines][:2] == ["none", "none (paper, LLaVA-1.5-7B)"]
    assert tables.main([str(renamed), "--paper", "--family", "v1_5"]) == 0
    assert "vispruner (paper, LLaVA-1.5-7B)" in capsys.readouterr().out
