"""The paper's accuracy tables as recipes: one command runs exactly a table's rows and prints it
with the paper's numbers under ours.

    bash scripts/paper_table.sh                       # the recipes (also --list)
    bash scripts/paper_table.sh table1 --dry-run      # every lmms-eval command, nothing written
    bash scripts/paper_table.sh llava-next -- --gpus 8

Each recipe is the unpruned model plus every method x budget of the table, on the family's table
columns, run cell by cell through scripts/eval_table.sh's runner (eval/run_table.py: finished cells
are skipped, interrupted ones resume). A method the model class cannot run (`llava.support_matrix()`)
prints "n/a: <reason>" instead of a command, and a real run skips it. Options after `--` go to every
run (--gpus, --model, --results, ...). --dry-run, before or after `--`, writes nothing.
The efficiency table has its own commands: `python -m efficiency.flops paper` (FLOPs, storage) and
`bash scripts/efficiency/gpu.sh` (memory, CUDA time).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from types import SimpleNamespace

from .benchmarks import FAMILIES
from .run_table import add_run_options, cells, parse_before_separator, run_cells


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    family: str  # eval.benchmarks.FAMILIES key
    host: str  # the model class, as keyed in llava.support_matrix()
    methods: tuple[tuple[str, str], ...]  # (method, important ratio or "-"), in the paper's row order
    budgets: tuple[int, ...]  # what the launcher takes: per image / crop / frame
    labels: tuple[int, ...]  # the paper's token counts for those budgets
    unit: str = "tokens"  # what a budget counts
    notes: tuple[str, ...] = ()

    def plan(self) -> list[str]:
        methods = ", ".join(m if r == "-" else f"{m} (r = {r})" for m, r in self.methods)
        budgets = ", ".join(str(b) if b == n else f"{b} (paper: {n})" for b, n in zip(self.budgets, self.labels))
        return [f"{self.name}: {self.description}", f"rows: unpruned + {methods}",
                f"budgets, {self.unit}: {budgets}",
                f"columns: {' '.join(FAMILIES[self.family]['table'])}", *self.notes]  # fmt: skip


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("table1", "Table 1, LLaVA-1.5-7B (576 tokens per image)", "v1_5", "LlavaForConditionalGeneration",
               (("tome", "-"), ("fastv", "-"), ("sparsevlm", "-"), ("prumerge_plus", "-"), ("visionzip", "-"),
                ("vispruner", "0.5")), (128, 64, 32), (128, 64, 32)),
        Recipe("llava-next", "LLaVA-NeXT-7B table (paper mode: 5 crops x 576 = 2880 tokens)", "v1_6",
               "LlavaNextForConditionalGeneration",
               (("fastv", "-"), ("sparsevlm", "-"), ("visionzip", "-"), ("vispruner", "0.5")),
               (128, 64, 32), (640, 320, 160), unit="tokens per crop (x 5 crops)"),
        Recipe("video", "Video-LLaVA-7B table (8 frames x 256 = 2048 tokens; GPT judge)", "video",
               "VideoLlavaForConditionalGeneration", (("fastv", "-"), ("vispruner", "0.5")),
               (57, 28, 14), (455, 227, 114), unit="tokens per frame (x 8 frames = 456/224/112)",
               notes=("each frame also keeps its [CLS] token (8 more tokens than the budget)",
                      "first: python -m eval.video_data BENCH ... per benchmark; the judge reads $OPENAI_API_KEY")),
    ]
}  # fmt: skip

# (family, method) cells known to run (a test checks them against llava.support_matrix()); only a recipe
# with a method outside these builds the support matrix (tiny models, ~5 s)
KNOWN_TO_RUN = {("v1_5", m) for m, _ in RECIPES["table1"].methods} | {(f, "vispruner") for f in FAMILIES}
OTHER_TABLES = ("efficiency table: python -m efficiency.flops paper (FLOPs, storage); "
                "bash scripts/efficiency/gpu.sh (memory, CUDA time)")  # fmt: skip


def listing() -> str:
    lines = []
    for recipe in RECIPES.values():
        lines += [recipe.plan()[0], *(f"    {line}" for line in recipe.plan()[1:])]
    return "\n".join([*lines, OTHER_TABLES])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/paper_table.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("recipe", nargs="?", help=f"one of {', '.join(RECIPES)}; none: list them")
    parser.add_argument("--list", action="store_true", help="print the recipes and stop")
    add_run_options(parser)
    args = parse_before_separator(parser, argv)
    if args.recipe is not None and args.recipe not in RECIPES:
        parser.error(f"unknown recipe {args.recipe!r}; the recipes: {', '.join(RECIPES)} (--list describes them)")
    return args


def refused(recipe: Recipe) -> dict[str, str]:
    """{method: why the recipe's model cannot run it}; asks the support matrix only for methods not known to run."""
    unknown = [m for m, _ in recipe.methods if (recipe.family, m) not in KNOWN_TO_RUN]
    if not unknown:
        return {}
    from llava import support_matrix

    matrix = support_matrix()
    return {m: matrix[m][recipe.host] for m in unknown if matrix[m][recipe.host] != "runs"}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list or args.recipe is None:
        print(listing())
        return 0
    recipe = RECIPES[args.recipe]
    table = SimpleNamespace(family=recipe.family, benchmarks=list(FAMILIES[recipe.family]["table"]),
                            budgets=list(recipe.budgets), methods=[m for m, _ in recipe.methods], ratio="-",
                            no_baseline=False, rest=args.rest)  # fmt: skip
    plan = recipe.plan()
    print("\n".join(f"# {line}" for line in plan), flush=True)
    return run_cells(recipe.name, cells(table, dict(recipe.methods)), dry_run=args.dry_run,
                     keep_going=args.keep_going, refused=refused(recipe), paper=True, notes=plan[1:])  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
