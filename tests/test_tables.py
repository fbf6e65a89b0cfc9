"""The paper-layout table: Acc. with MME/20, Rel. against the unpruned row, server cells, paper rows."""
import json
from pathlib import Path

import pytest

from eval import tables
from eval.benchmarks import BENCHMARKS

MODEL = "llava-v1.5-7b"


def lmms_eval_result(folder: Path, task_metrics: dict) -> None:
    """A result file as lmms-eval writes it: <output>/<model id>/<date>_results.json."""
    results = {task: {f"{metric},none": value for metric, value in metrics.items()} for task, metrics in task_metrics.items()}
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
        cell(tmp_path, method, setting, "mme", {"mme": {"mme_perception_score": perception, "mme_cognition_score": cognition}})
        splits = ("random", "popular", "adversarial")
        cell(tmp_path, method, setting, "pope", {f"pope_paper_{s}": {"pope_f1_score": f} for s, f in zip(splits, pope)})
    cell(tmp_path, "none", "full", "vqav2", server=78.5)
    cell(tmp_path, "vispruner", "n64_r0.5", "vqav2")  # submitted, score not entered yet
    return tmp_path


def test_columns_values_and_summaries(results):
    [table] = tables.build(results)
    assert table.columns == ["VQAv2", "GQA", "POPE", "MME", "MME-cog"]
    base, pruned = table.lines
    assert (base.method, base.tokens, pruned.method, pruned.tokens, pruned.ratio) == ("none", "all", "vispruner", "64", "0.5")
    assert pruned.values["POPE"] == pytest.approx(80.0) and pruned.values["MME-cog"] == 300.0
    assert base.summary["Acc."] == pytest.approx((78.5 + 62 + 86 + 1510 / 20) / 4)
    assert base.summary["Rel."] == pytest.approx(100.0)
    assert pruned.summary == {"Acc.": None, "Rel.": None}  # VQAv2 still at the server
    markdown = tables.render([table])
    assert "| vispruner | 64 | 0.5 | sub. | 55.0 | 80.0 | 1370.0 | 300.0 | – | – |" in markdown


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
