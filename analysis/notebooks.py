"""Execute the analysis notebooks (`analysis/*.ipynb`) headless, with their parameters overridden.

    python -m analysis.notebooks --output out/notebooks                 # every notebook, default model
    python -m analysis.notebooks --smoke --output /tmp/nb attention_shift

Each notebook's cell tagged `parameters` holds its defaults; papermill runs it with the given values
in a cell inserted right after that one, in `analysis/` as its folder. Executed copies (with
outputs) are written to --output, each whole or not at all (an earlier copy stays until the new one is
complete); the notebooks in the repository stay output-free.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from efficiency.command import check_output, output_problem, positive_int

FOLDER = Path(__file__).resolve().parent
NOTEBOOKS = {path.stem: path for path in sorted(FOLDER.glob("*.ipynb"))}


def execute(name: str, parameters: dict | None = None, output: Path | None = None, timeout: int = 1800):
    """Run notebook `name` (a key of NOTEBOOKS) with `parameters`; returns the executed notebook."""
    import papermill

    if name not in NOTEBOOKS:
        raise ValueError(f"no notebook {name!r}; available: {', '.join(NOTEBOOKS)}")

    def run(path):
        return papermill.execute_notebook(
            NOTEBOOKS[name],
            path,
            parameters=parameters or {},
            kernel_name="python3",
            cwd=FOLDER,
            execution_timeout=timeout,
            progress_bar=False,
        )

    if output is None:
        return run(None)
    # papermill writes its output as the cells run: into a file beside, renamed when complete (a failed run's
    # copy, with the error, becomes <name>.failed.ipynb; an earlier complete copy stays as it is)
    output.mkdir(parents=True, exist_ok=True)
    partial = output / f".{name}.partial.ipynb"
    try:
        executed = run(str(partial))
    except BaseException:
        if partial.exists():
            partial.replace(output / f"{name}.failed.ipynb")
        raise
    partial.replace(output / f"{name}.ipynb")
    return executed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.notebooks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help=f"notebooks to run (default: all of {', '.join(NOTEBOOKS)})")
    parser.add_argument("--output", type=Path, required=True, help="folder for the executed copies")
    parser.add_argument("--smoke", action="store_true", help="a random-weight model on a few drawn questions")
    parser.add_argument("--results", type=Path, help="cache folder for intermediate results (default: the notebooks')")
    parser.add_argument("--figures", type=Path, help="also save the figures as PNG and PDF here")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads in each notebook's kernel")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in NOTEBOOKS]
    if unknown:
        parser.error(f"unknown notebook(s) {', '.join(unknown)}; available: {', '.join(NOTEBOOKS)}")
    check_output(parser, "--output", args.output, folder=True, exist_ok=True)  # executed copies are replaced
    for option, folder in (("--results", args.results), ("--figures", args.figures)):
        problem = output_problem(folder, folder=True, exist_ok=True)
        if problem:
            parser.error(f"{option}: {problem}")
    parameters = {"SMOKE": args.smoke, "THREADS": args.threads}
    parameters.update({k: str(v.resolve()) for k, v in (("RESULTS", args.results), ("FIGURES", args.figures)) if v})
    for name in args.names or NOTEBOOKS:
        execute(name, parameters, args.output)
        print(f"{name}: {args.output / (name + '.ipynb')}")


if __name__ == "__main__":
    main()
