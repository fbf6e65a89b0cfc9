"""The paper's table recipes (eval/paper_tables.py): a dry run lists every cell of the table, as a command or
as "n/a: <reason>" where the model cannot run the method, passes the options after `--` to every command and
writes nothing. An end-to-end run needs the benchmarks' datasets and weights from the Hugging Face Hub, which
are not available offline, so only the dry runs (and the recipes' agreement with the support matrix) are
tested here."""

import subprocess
from pathlib import Path

import pytest

from eval import paper_tables
from eval.benchmarks import FAMILIES

REPO = Path(__file__).resolve().parent.parent


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
    assert len(runs) + len(missing) == len(table) * (1 + len(recipe.methods) * len(recipe.budgets))
    assert all(line.startswith("accelerate launch --num_processes=8 ") for line in runs)
    assert all(len(line) > len("n/a: [") and not line.startswith("n/a: [") for line in missing)  # a reason
    for method, ratio in recipe.methods:
        for budget in recipe.budgets:
            cell = f"method={method},visual_token_num={budget}," + (f"important_ratio={ratio}," if ratio != "-" else "")
            listed = sum(cell in line for line in runs) + sum(f" {method} {budget} tokens]" in line for line in missing)
            assert listed == len(table), (method, budget)
    assert sum("method=none," in line for line in runs) == len(table)
    assert list(tmp_path.iterdir()) == [], "a dry run creates no folder and no file"
    if name == "table1":
        assert not missing
    if name == "llava-next":
        assert {line.split("[")[-1].split()[2] for line in missing} == {"fastv", "sparsevlm", "visionzip"}
    if name == "video":
        assert {line.split("[")[-1].split()[2] for line in missing} == {"fastv"}
        assert "[CLS]" in done.stdout


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
    assert recipes["llava-next"].budgets == (128, 64, 32) and recipes["llava-next"].labels == (640, 320, 160)
    assert recipes["video"].budgets == (57, 28, 14) and recipes["video"].labels == (455, 227, 114)
    assert all(dict(recipe.methods)["vispruner"] == "0.5" for recipe in recipes.values())
    assert all(r == "-" for recipe in recipes.values() for m, r in recipe.methods if m != "vispruner")


@pytest.mark.slow
def test_the_cells_known_to_run_do_run():
    """KNOWN_TO_RUN lets a recipe skip building the support matrix: it must agree with the matrix."""
    from llava import support_matrix

    matrix = support_matrix()
    hosts = {recipe.family: recipe.host for recipe in paper_tables.RECIPES.values()}
    wrong = [(f, m, matrix[m][hosts[f]]) for f, m in paper_tables.KNOWN_TO_RUN if matrix[m][hosts[f]] != "runs"]
    assert not wrong
