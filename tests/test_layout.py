"""The package layout: `llava/` is a library that imports none of its consumers, and it (and every
command's `--help`) loads quickly because model classes are imported on first use."""

import ast
import json
import subprocess
import sys

import pytest

from support import PACKAGES, REPO

CONSUMERS = {*PACKAGES, "examples", "tests"} - {"llava"}


def imported_modules(path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in a file, and of relative ones that climb out."""
    found = []
    depth = len(path.relative_to(REPO).parts) - 1  # folders from the checkout down to the file's package
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.ImportFrom) and node.level > depth:  # level 1 is the file's own package
            found.append((node.lineno, "<outside its top-level package>"))
    return found


def test_the_library_imports_none_of_its_consumers():
    arrows = [f"{path.relative_to(REPO)}:{line} imports {module}"
              for path in sorted((REPO / "llava").rglob("*.py"))
              for line, module in imported_modules(path) if module in CONSUMERS or module.startswith("<")]  # fmt: skip
    assert not arrows, "llava/ must not depend on the code built on it:\n" + "\n".join(arrows)


def test_the_import_rule_sees_absolute_and_climbing_imports(tmp_path):
    module = REPO / "llava" / "models" / "_probe_for_test.py"
    cases = {"import scenette": True, "from eval.plugin import model": True, "from ...analysis import x": True,
             "from ..pruning import base": False, "import torch": False, "from . import clip": False}  # fmt: skip
    try:
        for source, crosses in cases.items():
            module.write_text(source + "\n")
            assert any(name in CONSUMERS or name.startswith("<") for _, name in imported_modules(module)) == crosses, (
                source
            )
    finally:
        module.unlink()


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_import_llava_loads_neither_torch_nor_transformers():
    loaded = json.loads(run_python("import sys, json, llava; print(json.dumps(sorted(sys.modules)))"))
    assert not {"torch", "transformers"} & set(loaded)


MODEL_CLASSES = "[m for m in sys.modules if m.startswith('transformers.models.') and '.modeling_' in m]"


@pytest.mark.slow
def test_the_pruning_api_loads_no_model_class_until_a_model_is_pruned():
    loaded = json.loads(run_python(f"import sys, json, llava; llava.apply_pruning; print(json.dumps({MODEL_CLASSES}))"))
    assert loaded == []


def commands() -> list[str]:
    """Every command the checkout offers: modules run with `python -m` and the example scripts."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            source = path.read_text()
            if path.name == "__main__.py" or 'if __name__ == "__main__"' in source:
                parts = path.relative_to(REPO).with_suffix("").parts
                found.append("-m " + ".".join(parts[:-1] if parts[-1] == "__main__" else parts))
    return found + [str(path.relative_to(REPO)) for path in sorted((REPO / "examples").glob("*.py"))]


# What a command must not load to answer `--help`: each of these costs 0.3-2 s (torch alone about 1.3 s,
# transformers' model classes several more), so a command imports them where it first needs them.
HEAVY = ("torch", "transformers", "matplotlib", "pandas", "lmms_eval")

# Each command's `--help` runs in a fork of one small process: the check costs about a second.
HELP_PROBE = """
import json, multiprocessing, runpy, sys

def probe(command, queue):
    sys.argv = [command.split()[-1], "--help"]
    try:
        if command.startswith("-m "):
            runpy.run_module(command[3:], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(command, run_name="__main__")
        status = "no exit"
    except SystemExit as done:
        status = done.code or 0
    queue.put((status, [name for name in HEAVY if name in sys.modules]))

results = {}
context = multiprocessing.get_context("fork")
for command in json.loads(sys.argv[1]):
    queue = context.Queue()
    child = context.Process(target=probe, args=(command, queue))
    child.start()
    results[command] = queue.get(timeout=120)
    child.join()
print(json.dumps(results))
""".replace("HEAVY", repr(HEAVY))


@pytest.mark.slow
def test_every_command_answers_help_without_loading_torch_or_model_classes():
    listed = commands()
    assert "-m analysis" in listed and "-m efficiency.latency" in listed and "examples/demo.py" in listed
    done = subprocess.run([sys.executable, "-c", HELP_PROBE, json.dumps(listed)], capture_output=True, text=True,
                          cwd=REPO, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    failed = {command: status for command, (status, _) in results.items() if status != 0}
    slow = {command: loaded for command, (_, loaded) in results.items() if loaded}
    assert not failed, f"--help did not exit 0: {failed}"
    assert not slow, f"--help loaded these (import them where they are first needed): {slow}"


def test_the_documented_checkpoint_path_is_the_shipped_checkpoint():
    """`checkpoints/scenette-llava` (the path the docs and lmms-eval commands use in a checkout) is the
    package data that installs with `scenette`."""
    from scenette.model import CHECKPOINT

    assert (REPO / "checkpoints" / "scenette-llava").resolve() == CHECKPOINT.resolve()
    assert (REPO / "checkpoints" / "scenette-llava" / "model.safetensors").is_file()
