"""The paper's table recipes (eval/paper_tables.py): a dry run lists every cell of the table, as a command or
as "n/a: <reason>" where the model cannot run the method, passes the options after `--` to every command and
writes nothing; --benchmarks / --labels choose part of a table; every cell a recipe runs is matched with its
paper row (TOKENS and the recipe's extra model arguments). The paper's benchmarks need datasets and weights
from the Hugging Face Hub, not available offline, so the end-to-end run answers one column with a Scenette
task on the shipped small checkpoint."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from eval import paper_tables
from eval.benchmarks import FAMILIES

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "checkpoints" / "scenette-llava"  # 4 LM layers, 6 CLIP layers, 576 tokens per image


def paper_table(*argv, cwd):
    return subprocess.run(["bash", str(REPO / "scripts" / "paper_table.sh"), *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=120)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", list(paper_tables.RECIPES))
def test_a_dry_run_lists_every_cell_and_writes_nothing(name, tmp_path):
    recipe = paper_tables.RECIPES[name]
    argv = [name, "--dry-run", "--", "--gpus", "8"] if name != "video" else [name, "--", "--gpus", "8", "--dry-run"]
    done = paper_table(*argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    runs = [line for line in lines if " -m lmms_eval " in line]
    missing = [line for line in lines if line.startswith("n/a: ")]
    table = FAMILIES[recipe.family]["table"]
    assert len(runs) + len(missing) == len(table) * (1 + len(recipe.methods) * len(recipe.labels))
    assert all(line.startswith("accelerate launch --num_processes=8 ") for line in runs)
    assert all(len(line) > len("n/a: [") and not line.startswith("n/a: [") for line in missing)  # a reason
    for method, ratio in recipe.methods:
        for label in recipe.labels:
            budget = recipe.budget(method, label)
            cell = f"method={method},visual_token_num={budget}," + (f"important_ratio={ratio}," if ratio != "-" else "")
            extra = ",".join(recipe.model_args(method, label))
            listed = sum(cell in line and extra in line for line in runs)
            listed += sum(f" {method} {budget} tokens]" in line for line in missing)
            assert listed == len(table), (method, budget)
    assert sum("method=none," in line for line in runs) == len(table)
    assert list(tmp_path.iterdir()) == [], "a dry run creates no folder and no file"
    refused = {tuple(line.split("[")[-1].split()[2:4]) for line in missing}
    # SparseVLM publishes schedules for 64/128/192 tokens only; every other cell runs
    assert refused == {"table1": {("sparsevlm", "32")}, "llava-next": {("sparsevlm", str(n)) for n in (640, 320, 160)},
                       "video": set()}[name]  # fmt: skip
    assert all("pass schedule=" in line for line in missing)
    if name == "video":
        assert "frame_cls=false" in done.stdout and "video_token_num=455,video_split=even" in done.stdout


@pytest.mark.slow
def test_a_bad_recipe_name_lists_the_recipes_and_no_name_prints_them(tmp_path):
    done = paper_table("table9", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown recipe 'table9'" in done.stderr and all(name in done.stderr for name in paper_tables.RECIPES)
    listed = paper_table(cwd=tmp_path)
    assert listed.returncode == 0 and all(name in listed.stdout for name in paper_tables.RECIPES)
    assert "efficiency.flops paper" in listed.stdout and "640" in listed.stdout and "455" in listed.stdout


def test_the_recipes_take_the_launchers_budgets_and_ratios():
    recipes = paper_tables.RECIPES
    next_table, video = recipes["llava-next"], recipes["video"]
    assert next_table.labels == (640, 320, 160) and video.labels == (455, 227, 114)
    assert [next_table.budget("vispruner", n) for n in next_table.labels] == [128, 64, 32]  # per crop
    assert [next_table.budget("fastv", n) for n in next_table.labels] == [640, 320, 160]  # per image
    assert [video.budget(m, 455) for m in ("fastv", "vispruner")] == [455, 455]  # per video
    assert all(dict(recipe.methods)["vispruner"] == "0.5" for recipe in recipes.values())
    assert all(r == "-" for recipe in recipes.values() for m, r in recipe.methods if m != "vispruner")


@pytest.mark.slow
def test_the_cells_known_to_run_do_run():
    """KNOWN_TO_RUN lets a recipe skip building the support matrix: it must agree with the matrix."""
    from llava import support_matrix
    from llava.support import cell_options

    matrix = support_matrix()
    hosts = {recipe.family: recipe.host for recipe in paper_tables.RECIPES.values()}
    wrong = [
        (f, m, matrix[m][hosts[f]])
        for f, m in paper_tables.KNOWN_TO_RUN
        if cell_options(hosts[f], matrix[m][hosts[f]]) not in ({}, {"layout": "paper"})
    ]
    assert not wrong


@pytest.mark.parametrize(
    "argv, message",
    [(["table1", "--benchmarks", "pope", "seed"], "--benchmarks: not in table1: seed; allowed: vqav2 gqa vizwiz"),
     (["llava-next", "--labels", "128"], "--labels: not in llava-next: 128; allowed: 640 320 160"),
     (["--labels", "64"], "name one")],
)  # fmt: skip
def test_part_of_a_table_names_what_is_allowed(argv, message, capsys):
    with pytest.raises(SystemExit):
        paper_tables.parse_args(argv)
    assert message in capsys.readouterr().err


def test_benchmarks_and_labels_choose_columns_and_row_groups():
    args = paper_tables.parse_args(["video", "--labels", "114", "455", "--benchmarks", "msvd", "--", "--gpus", "2"])
    assert (args.labels, args.benchmarks, args.rest) == ([455, 114], ["msvd"], ["--gpus", "2"])  # the table's order
    cells = paper_tables.RECIPES["video"].cells(args.rest, args.benchmarks, args.labels)
    assert [cell[1:4] for cell in cells] == [["msvd", "full", "-"], ["msvd", "455", "-"], ["msvd", "455", "0.5"],
                                             ["msvd", "114", "-"], ["msvd", "114", "0.5"]]  # fmt: skip
    assert cells[2][4:] == ["vispruner", "--model-arg=frame_cls=false", "--model-arg=video_token_num=455",
                            "--model-arg=video_split=even", "--gpus", "2"]  # fmt: skip
    whole = paper_tables.parse_args(["table1"])
    assert whole.labels is None and whole.benchmarks is None
    assert len(paper_tables.RECIPES["table1"].cells([])) == 10 * (1 + 6 * 3)


def plant(cell: list[str], results: Path) -> Path:
    """The results folder of a recipe cell, as a finished run leaves it (lmms-eval's file, or the judge's)."""
    from eval import launch

    # --dry-run: parsed as a run would be, without looking for the (absent) checkpoint
    args = launch.parse_args(cell + ["--results", str(results), "--model", "/ckpt/Some-7B-model", "--dry-run"],
                             method_check=False)  # fmt: skip
    out = launch.output_folder(args)
    (out / "model_id").mkdir(parents=True)
    (out / "benchmark.json").write_text(json.dumps(args.spec.describe()))
    results_file = {"results": {task: {f"{metric},none": 0.5} for task, metric in args.spec.metrics}}
    (out / "model_id" / "20260101_000000_results.json").write_text(json.dumps(results_file))
    if args.spec.judged:
        (out / "judged.json").write_text(json.dumps({"accuracy": 50.0, "score": 3.0}))
    return out


@pytest.mark.parametrize("name", list(paper_tables.RECIPES))
def test_every_cell_of_a_recipe_gets_its_paper_row(name, tmp_path):
    """Each row a recipe runs (its TOKENS, its extra model arguments in the setting folder) is matched with the
    paper's row of that label, under the recipe's family even for a model folder that names none."""
    from eval import tables
    from eval.paper_numbers import PAPER

    recipe = paper_tables.RECIPES[name]
    bench = FAMILIES[recipe.family]["table"][0]
    for cell in recipe.cells([], [bench]):
        plant(cell, tmp_path)
    [table] = tables.build(tmp_path, paper=True, family=recipe.family)
    ours = [line for line in table.lines if not line.paper]
    assert len(ours) == 1 + len(recipe.methods) * len(recipe.labels)
    following = dict(zip(map(id, table.lines), table.lines[1:]))
    for line in ours:
        reported = following.get(id(line))
        assert reported is not None and reported.paper and reported.method.startswith(f"{line.method} (paper, "), line
        tokens = None if line.method == "none" else int(line.tokens)
        key = ("none" if line.method == "none" else line.method.replace("_plus", "+"), tokens)
        assert reported.summary == {c: PAPER[recipe.family][key][c] for c in table.summary_columns}, line
    if name == "video":  # the options are part of the row: a plain per-frame run at 455 is no paper row
        assert {line.options for line in ours if line.method == "vispruner"} == {
            f"frame_cls=false, video_split=even, video_token_num={n}" for n in recipe.labels}  # fmt: skip
        plant(["video", bench, "455", "0.5", "vispruner"], tmp_path)
        [table] = tables.build(tmp_path, paper=True, family="video")
        [plain] = [i for i, line in enumerate(table.lines) if line.method == "vispruner" and not line.options
                   and line.tokens == "455"]  # fmt: skip
        assert plain + 1 == len(table.lines) or not table.lines[plain + 1].paper
    if name == "llava-next":
        assert {line.tokens for line in ours if line.method in ("fastv", "sparsevlm")} == {"640", "320", "160"}
        assert {line.tokens for line in ours if line.method in ("visionzip", "vispruner")} == {"128", "64", "32"}
        assert [(line.method, line.tokens) for line in ours][:5] == [  # grouped by the paper's label, 640 first
            ("none", "all"), ("fastv", "640"), ("sparsevlm", "640"), ("visionzip", "128"), ("vispruner", "128")]  # fmt: skip


@pytest.mark.slow
def test_a_recipe_runs_end_to_end_on_the_small_checkpoint(tmp_path):
    """table1 at one column (pope, answered by a Scenette task) and one row group (64 tokens), 2 questions per
    cell: 7 real lmms-eval runs (70-90 s on 2 cores, nearly all of it lmms-eval's start). Cells the 4-layer model
    cannot run fail with their reason and the others still run; the table has our row and the paper's for each."""
    from eval.paper_numbers import PAPER
    from eval.scenette_cells import CONV_TEMPLATE

    recipe, results = paper_tables.RECIPES["table1"], tmp_path / "results"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    argv = ["table1", "--benchmarks", "pope", "--labels", "64", "--keep-going", "--", "--model", str(CHECKPOINT),
            "--conv-template", CONV_TEMPLATE, "--tasks", "scenette_reading", "--metric", "scenette_reading:exact_match",
            "--device", "cpu", "--limit", "2", "--results", str(results)]  # fmt: skip
    done = subprocess.run(["bash", str(REPO / "scripts" / "paper_table.sh"), *argv], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=600)  # fmt: skip
    cells = {m: results / CHECKPOINT.name / m / f"n64{'_r' + r if r != '-' else ''}_limit2" / "pope"
             for m, r in recipe.methods} | {"none": results / CHECKPOINT.name / "none" / "full_limit2" / "pope"}  # fmt: skip
    failed = {m: re.search(rf"FAILED: lmms_eval wrote no \*_results\.json under {re.escape(str(out))}: (.+?); see ",
                           done.stderr) for m, out in cells.items()}  # fmt: skip
    ran = {m for m, out in cells.items() if list(out.rglob("*_results.json"))}
    reasons = {m: match[1] for m, match in failed.items() if match}
    assert ran | set(reasons) == set(cells) and not ran & set(reasons), (done.stdout[-3000:], done.stderr[-3000:])
    assert "sparsevlm" in reasons and "does not fit a language model of 4 layers" in reasons["sparsevlm"]
    assert {"none", "vispruner", "visionzip", "fastv"} <= ran  # a failed cell does not stop the others
    assert done.returncode == (1 if reasons else 0)
    assert f"done {len(ran)}, already there 0, failed {len(reasons)}" in done.stdout

    rows = [
        [c.strip() for c in line.strip("|").split("|")] for line in done.stdout.splitlines() if line.startswith("|")
    ]
    header, body = rows[0], rows[2:]  # rows[1]: the |---| rule
    assert header == ["Method", "Tokens", "r", "POPE", "Acc.", "Rel."]
    for method in cells:
        paper_key = ("none", None) if method == "none" else (method.replace("_plus", "+"), 64)
        [i] = [i for i, row in enumerate(body) if row[0] == method]
        assert body[i + 1][0] == f"{method} (paper, LLaVA-1.5-7B)"
        assert body[i + 1][3] == f"{PAPER['v1_5'][paper_key]['pope']:.1f}"
        assert (body[i][3] == "–") == (method in reasons)  # ours: a percentage of 2 answers, or none
