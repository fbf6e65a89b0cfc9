"""The paper's accuracy tables as recipes: one command runs exactly a table's rows and prints it
with the paper's numbers under ours.

    bash scripts/paper_table.sh                       # the recipes (also --list)
    bash scripts/paper_table.sh table1 --dry-run      # every lmms-eval command, nothing written
    bash scripts/paper_table.sh llava-next -- --gpus 8
    bash scripts/paper_table.sh table1 --benchmarks pope mme --labels 64   # part of a table

Each recipe is the unpruned model plus every method x budget of the table, on the family's table
columns, run cell by cell through scripts/eval_table.sh's runner (eval/run_table.py: finished cells
are skipped, interrupted ones resume). A method the model class cannot run (`llava.support_matrix()`)
prints "n/a: <reason>" instead of a command, and a real run skips it. Options after `--` go to every
run (--gpus, --model, --results, ...). --dry-run, before or after `--`, writes nothing. --benchmarks and
--labels run part of a table: some of its columns, some of its row groups (the paper's token labels).
Each cell's results folder carries its extra model arguments (eval/results.py), and the table matches
our rows to the paper's by method, TOKENS and those options (eval/paper_numbers.py), with the recipe's
paper table even for a model folder whose name does not say which (a small test checkpoint).
The efficiency table has its own commands: `python -m efficiency.flops paper` (FLOPs, storage) and
`bash scripts/efficiency/gpu.sh` (memory, CUDA time).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .benchmarks import FAMILIES
from .run_table import add_run_options, parse_before_separator, run_cells


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    family: str  # eval.benchmarks.FAMILIES key
    host: str  # the model class, as keyed in llava.support_matrix()
    methods: tuple[tuple[str, str], ...]  # (method, important ratio or "-"), in the paper's row order
    labels: tuple[int, ...]  # the paper's token counts, one per row group
    unit: str = "tokens per image"
    crops: int = 1  # vision-side methods take label / crops per crop (LLaVA-NeXT's paper layout: 5)
    per_image: tuple[str, ...] = ()  # methods whose budget is the label itself (in-LLM: kept per image/video)
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (method, --model-arg KEY=VALUE...); {label} filled in
    notes: tuple[str, ...] = ()

    def budget(self, method: str, label: int) -> int:
        """What the launcher takes as TOKENS for `method` in the row group of `label` paper tokens."""
        return label if method in self.per_image else label // self.crops

    def model_args(self, method: str, label: int) -> list[str]:
        return [arg.format(label=label) for arg in dict(self.options).get(method, ())]

    def plan(self) -> list[str]:
        methods = ", ".join(m if r == "-" else f"{m} (r = {r})" for m, r in self.methods)
        budgets = "; ".join(
            f"{label}: " + ", ".join(f"{m} {self.budget(m, label)}" for m, _ in self.methods) for label in self.labels
        )
        return [f"{self.name}: {self.description}", f"rows: unpruned + {methods}",
                f"paper tokens -> TOKENS ({self.unit}): {budgets}",
                f"columns: {' '.join(FAMILIES[self.family]['table'])}", *self.notes]  # fmt: skip

    def cells(self, rest: list[str], benchmarks=None, labels=None) -> list[list[str]]:
        """Every run's launcher arguments: the unpruned model, then every label x method, per benchmark;
        `benchmarks` / `labels`: only these of the table's columns / row groups (default: all)."""
        labels = self.labels if labels is None else labels
        settings = [["full", "-"]] + [
            [
                str(self.budget(method, label)),
                ratio,
                method,
                *(f"--model-arg={arg}" for arg in self.model_args(method, label)),
            ]
            for label in labels
            for method, ratio in self.methods
        ]
        benchmarks = FAMILIES[self.family]["table"] if benchmarks is None else benchmarks
        return [[self.family, bench, *setting, *rest] for bench in benchmarks for setting in settings]


IN_LLM = ("fastv", "sparsevlm")
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("table1", "Table 1, LLaVA-1.5-7B (576 tokens per image)", "v1_5", "LlavaForConditionalGeneration",
               (("tome", "-"), ("fastv", "-"), ("sparsevlm", "-"), ("prumerge_plus", "-"), ("visionzip", "-"),
                ("vispruner", "0.5")), (128, 64, 32)),
        Recipe("llava-next", "LLaVA-NeXT-7B table (paper mode: 5 crops x 576 = 2880 tokens)", "v1_6",
               "LlavaNextForConditionalGeneration",
               (("fastv", "-"), ("sparsevlm", "-"), ("visionzip", "-"), ("vispruner", "0.5")),
               (640, 320, 160), unit="per crop for vision-side methods (x 5 crops), per image for in-LLM ones",
               crops=5, per_image=IN_LLM,
               notes=("in-LLM methods see the same 5 x 576 crop tokens (no newlines) and keep TOKENS of them",)),
        Recipe("video", "Video-LLaVA-7B table (8 frames x 256 = 2048 tokens; GPT judge)", "video",
               "VideoLlavaForConditionalGeneration", (("fastv", "-"), ("vispruner", "0.5")), (455, 227, 114),
               unit="per video", per_image=("fastv", "vispruner"),
               options=(("fastv", ("frame_cls=false",)),
                        ("vispruner", ("frame_cls=false", "video_token_num={label}", "video_split=even"))),
               notes=("each frame's [CLS] is dropped (frame_cls=false), as the paper's 2048 = 8 x 256 counts; "
                      "VisPruner spreads the total evenly over the 8 frames (455 = 7 x 57 + 56); the unpruned row "
                      "is stock transformers, which keeps the 8 [CLS] tokens (2056)",
                      "first: python -m eval.video_data BENCH ... per benchmark; the judge reads $OPENAI_API_KEY")),
    ]
}  # fmt: skip

# (family, method) cells known to run (a test checks them against llava.support_matrix()); only a recipe
# with a method outside these builds the support matrix (tiny models, ~20 s)
KNOWN_TO_RUN = {(r.family, m) for r in RECIPES.values() for m, _ in r.methods}
OTHER_TABLES = ("efficiency table: python -m efficiency.flops paper (FLOPs, storage); "
                "bash scripts/efficiency/gpu.sh (memory, CUDA time)")  # fmt: skip


def paper_cell(family: str, method: str, tokens: int) -> tuple[int, dict[str, str]] | None:
    """(the paper's token label, {key: value} of the extra model arguments) of the cell the recipe of `family`
    runs `method` in at TOKENS `tokens`; None if no recipe runs that cell. eval.tables groups rows by the label
    and matches them to the paper's with the options."""
    for recipe in RECIPES.values():
        if recipe.family != family or method not in dict(recipe.methods):
            continue
        for label in recipe.labels:
            if recipe.budget(method, label) == tokens:
                return label, dict(arg.split("=", 1) for arg in recipe.model_args(method, label))
    return None


def paper_options(family: str, method: str, tokens: int) -> dict[str, str] | None:
    """The extra model arguments of that cell (paper_cell), or None."""
    cell = paper_cell(family, method, tokens)
    return None if cell is None else cell[1]


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
    parser.add_argument("--benchmarks", nargs="+", metavar="B", help="only these of the table's columns")
    parser.add_argument("--labels", nargs="+", type=int, metavar="N", help="only these of the paper's token labels")
    add_run_options(parser)
    args = parse_before_separator(parser, argv)
    if args.recipe is not None and args.recipe not in RECIPES:
        parser.error(f"unknown recipe {args.recipe!r}; the recipes: {', '.join(RECIPES)} (--list describes them)")
    if args.recipe is None:
        if args.benchmarks or args.labels:
            parser.error("--benchmarks and --labels choose part of a recipe: name one")
        return args
    recipe = RECIPES[args.recipe]
    for option, chosen, allowed in (("--benchmarks", args.benchmarks, FAMILIES[recipe.family]["table"]),
                                    ("--labels", args.labels, recipe.labels)):  # fmt: skip
        unknown = [str(item) for item in chosen or () if item not in allowed]
        if unknown:
            parser.error(
                f"{option}: not in {recipe.name}: {', '.join(unknown)}; allowed: {' '.join(map(str, allowed))}"
            )
    # the table's order, each once
    args.benchmarks = args.benchmarks and [b for b in FAMILIES[recipe.family]["table"] if b in args.benchmarks]
    args.labels = args.labels and [n for n in recipe.labels if n in args.labels]
    return args


def refused(recipe: Recipe) -> dict[tuple[str, int], str]:
    """{(method, TOKENS): why the recipe's model cannot run it}: from the support matrix (asked only for
    methods not known to run), or the method's own refusal of that budget."""
    from llava.pruning import create_pruner

    settings = [(m, recipe.budget(m, label)) for m, _ in recipe.methods for label in recipe.labels]
    reasons = {}
    if any((recipe.family, m) not in KNOWN_TO_RUN for m, _ in recipe.methods):
        from llava.support import cell_options, support_matrix

        cells = {m: support_matrix()[m][recipe.host] for m, _ in recipe.methods}
        reasons = {(m, b): cells[m] for m, b in settings if cell_options(recipe.host, cells[m]) is None}
    for method, budget in settings:
        try:
            create_pruner(method, budget)
        except ValueError as error:
            reasons.setdefault((method, budget), str(error))
    return reasons


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list or args.recipe is None:
        print(listing())
        return 0
    recipe = RECIPES[args.recipe]
    plan = recipe.plan()
    if args.benchmarks or args.labels:
        plan.append("part of the table: " + "; ".join(
            f"{what} {' '.join(map(str, chosen))}" for what, chosen in (("columns", args.benchmarks),
                                                                         ("paper tokens", args.labels)) if chosen))  # fmt: skip
    print("\n".join(f"# {line}" for line in plan), flush=True)
    cells = recipe.cells(args.rest, args.benchmarks, args.labels)
    return run_cells(recipe.name, cells, dry_run=args.dry_run, keep_going=args.keep_going, refused=refused(recipe),
                     paper=True, notes=plan[1:], family=recipe.family)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
