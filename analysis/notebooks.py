"""Execute the analysis notebooks (`analysis/*.ipynb`) headless, with their parameters overridden.

    python -m analysis.notebooks --output out/notebooks                 # every notebook, default model
    python -m analysis.notebooks --smoke --output /tmp/nb attention_shift

Each notebook's cell tagged `parameters` holds its defaults; given values go into a cell inserted
right after it (the papermill convention), and the notebook runs in `analysis/` as its folder.
Executed copies (with outputs) are written to --output; the notebooks in the repository stay
output-free.
"""

from __future__ import annotations

import argparse
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
NOTEBOOKS = {path.stem: path for path in sorted(FOLDER.glob("*.ipynb"))}


def execute(name: str, parameters: dict | None = None, output: Path | None = None, timeout: int = 1800):
    """Run notebook `name` (a key of NOTEBOOKS) with `parameters`; returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    if name not in NOTEBOOKS:
        raise ValueError(f"no notebook {name!r}; available: {', '.join(NOTEBOOKS)}")
    notebook = nbformat.read(NOTEBOOKS[name], as_version=4)
    if parameters:
        tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
        if not tagged:
            raise ValueError(f"{NOTEBOOKS[name]} has no cell tagged 'parameters'")
        source = "# injected parameters\n" + "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
        notebook.cells.insert(
            tagged[0] + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
        )
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(FOLDER)}}
    )
    client.execute()
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, output / f"{name}.ipynb")
    return notebook


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"notebooks to run (default: all of {', '.join(NOTEBOOKS)})")
    parser.add_argument("--output", type=Path, required=True, help="folder for the executed copies")
    parser.add_argument("--smoke", action="store_true", help="a random-weight model on a few drawn questions")
    parser.add_argument("--results", type=Path, help="cache folder for intermediate results (default: the notebooks')")
    parser.add_argument("--figures", type=Path, help="also save the figures as PNG and PDF here")
    parser.add_argument("--threads", type=int, help="torch CPU threads in each notebook's kernel")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in NOTEBOOKS]
    if unknown:
        parser.error(f"unknown notebook(s) {', '.join(unknown)}; available: {', '.join(NOTEBOOKS)}")
    parameters = {"SMOKE": args.smoke, "THREADS": args.threads}
    parameters.update({k: str(v.resolve()) for k, v in (("RESULTS", args.results), ("FIGURES", args.figures)) if v})
    for name in args.names or NOTEBOOKS:
        execute(name, parameters, args.output)
        print(f"{name}: {args.output / (name + '.ipynb')}")


if __name__ == "__main__":
    main()
