"""A non-editable install works: no library code finds files through the repository checkout, and
a built wheel carries the shipped checkpoint and the task files and runs the demo on its own."""

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from support import PACKAGES

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "scenette" / "scenette-llava"
DEMO = REPO / "examples" / "demo.py"
TASKS = REPO / "eval" / "tasks"


# --- no path from __file__ leaves its top-level package ------------------------------------------


class Climb:
    """How high a path expression built from a module's `__file__` gets, counted from the folder of
    that module's top-level package: -1 is inside it, 0 is the package folder itself, 1 is whatever
    holds it (a checkout; site-packages once installed).

    States are (height now, highest reached on the way). Names bound to such paths anywhere in the
    module (`HERE = Path(__file__).parent`, then `HERE.parent`) are followed, so splitting a chain
    over assignments does not hide it.
    """

    KEEP_METHODS = {"resolve", "absolute", "expanduser"}  # path.resolve() is the same folder
    KEEP_FUNCTIONS = {"Path", "PurePath", "str", "fspath", "abspath", "realpath", "normpath"}

    def __init__(self, tree: ast.AST, depth: int, module_depths: dict[str, int]):
        self.depth = depth  # folders between the top-level package's folder and this module's file
        self.module_depths = module_depths  # the same for our other modules, for `<module>.__file__`
        self.modules = {}  # local name -> dotted module name, from the imports
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                self.modules.update({alias.asname or alias.name: alias.name for alias in node.names})
            elif isinstance(node, ast.ImportFrom) and node.module:
                self.modules.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
        bindings = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                bindings += [(target.id, node.value) for target in node.targets if isinstance(target, ast.Name)]
            elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value and isinstance(node.target, ast.Name):
                bindings.append((node.target.id, node.value))
        self.names: dict[str, tuple[int, int]] = {}
        for _ in range(len(bindings) + 1):  # to a fixpoint; a name bound twice takes the higher
            before = dict(self.names)
            for name, value in bindings:
                state = self(value)
                if state is not None:
                    old = self.names.get(name, state)
                    self.names[name] = (max(old[0], state[0]), max(old[1], state[1]))
            if self.names == before:
                break

    def __call__(self, node: ast.AST) -> tuple[int, int] | None:
        """(height, highest) of `node`, or None if it is not a path built from a `__file__`."""
        if isinstance(node, ast.Name):
            return (-self.depth - 1,) * 2 if node.id == "__file__" else self.names.get(node.id)
        if isinstance(node, ast.Attribute) and node.attr == "__file__":  # another module's file
            dotted = ast.unparse(node.value)
            depth = self.module_depths.get(self.modules.get(dotted, dotted))
            return None if depth is None else (-depth - 1,) * 2
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            return up(self(node.value), 1)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
            index = node.slice.value if isinstance(node.slice, ast.Constant) else None
            known = isinstance(index, int) and index >= 0
            return up(self(node.value.value), index + 1 if known else 10**6)  # parents[n], [-1]: unknowable, so out
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):  # path / "../x"
            return self.descend(self(node.left), [node.right])
        if not isinstance(node, ast.Call):
            return None
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        first = node.args[0] if node.args else None
        if isinstance(func, ast.Attribute) and name in self.KEEP_METHODS:
            return self(func.value)
        if isinstance(func, ast.Attribute) and name == "joinpath":
            return self.descend(self(func.value), node.args)
        if first is None:
            return None
        if name in self.KEEP_FUNCTIONS:
            return self(first)
        if name == "dirname":
            return up(self(first), 1)
        if name == "join":  # os.path.join(base, "..", ...)
            return self.descend(self(first), node.args[1:])
        return None

    @staticmethod
    def descend(state, parts):
        """Follow path parts: ".." goes up, anything else (a name, or a value not known here) down."""
        for part in parts:
            text = part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else None
            segments = Path(text).parts if text is not None else [".." if ast.unparse(part) == "os.pardir" else "x"]
            for segment in segments:
                if state is not None and segment != ".":
                    state = up(state, 1) if segment == ".." else (state[0] - 1, state[1])
        return state


def up(state, levels: int):
    return None if state is None else (state[0] + levels, max(state[1], state[0] + levels))


def module_depths(root: Path) -> dict[str, int]:
    """Each module of our packages by dotted name -> folders between its package's folder and its file."""
    depths = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            depths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = len(parts) - 2
    return depths


def escapes(source: str, depth: int, depths: dict[str, int] | None = None) -> list[str]:
    """Path expressions of a module `depth` folders below its top-level package's folder that reach
    above that folder (the checkout now, site-packages once installed)."""
    tree = ast.parse(source)
    climb = Climb(tree, depth, depths or {})

    def leaves(node) -> bool:
        state = climb(node) if isinstance(node, ast.expr) else None
        return state is not None and state[1] > 0

    # Only where a path first leaves: not the expressions built on it, nor the uses of a name bound to it.
    return [f"line {node.lineno}: {ast.unparse(node)}" for node in ast.walk(tree)
            if leaves(node) and not isinstance(node, ast.Name) and not any(map(leaves, ast.iter_child_nodes(node)))]  # fmt: skip


@pytest.mark.parametrize(
    "source, depth, leaves",
    [
        ("from pathlib import Path\nX = Path(__file__).resolve().parents[2] / 'checkpoints'", 1, True),
        ("from pathlib import Path\nX = Path(__file__).resolve().parents[1] / 'checkpoint'", 1, False),
        ("from pathlib import Path\nX = Path(__file__).parent / 'tasks'", 0, False),
        ("from pathlib import Path\nX = Path(__file__).resolve().parent.parent", 0, True),
        ("from pathlib import Path\nX = Path(__file__).resolve().parent.parent", 1, False),
        ("from pathlib import Path\nHERE = Path(__file__).parent\nROOT = HERE.parent", 0, True),
        (
            "from pathlib import Path\nHERE = Path(__file__).parent\nSUB = HERE / 'tasks'\nBACK = SUB.parent.parent",
            0,
            True,
        ),
        ("import os\nX = os.path.join(os.path.dirname(__file__), '..', 'data')", 0, True),
        ("import os\nX = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')", 0, False),
        ("from pathlib import Path\nX = Path(__file__).parent / '../../data'", 1, True),
        ("from pathlib import Path\ndef f(n):\n    return Path(__file__).parents[n]", 3, True),
        ("import llava\nfrom pathlib import Path\nX = Path(llava.__file__).parent.parent", 5, True),
        ("import scenette\nfrom pathlib import Path\nX = Path(scenette.__file__).parents[1]", 0, False),
        ("import scenette\nfrom pathlib import Path\nX = Path(scenette.__file__).parents[2]", 0, True),
        ("from pathlib import Path\nX = Path(__file__).parent.joinpath('..', 'data')", 0, True),
        ("from pathlib import Path\nX = Path('data').parent.parent", 0, False),
    ],
)
def test_the_escape_rule(source, depth, leaves):
    assert bool(escapes(source, depth, {"llava": 0, "scenette": 1})) == leaves


def test_no_library_code_reaches_outside_its_package():
    """Installed, a package's parent folder is site-packages: data must be package data (found with
    importlib.resources) or a path the user gives (relative to the current directory, or a cache)."""
    depths = module_depths(REPO)
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            depth = len(path.relative_to(REPO).parts) - 2
            found += [f"{path.relative_to(REPO)} {hit}" for hit in escapes(path.read_text(), depth, depths)]
    assert not found, "paths that leave their package (use importlib.resources or a user-given path):\n" + "\n".join(
        found
    )


def test_default_outputs_go_to_the_current_folder_or_the_user_cache():
    """Never into the package: installed, it may be read-only, and an upgrade replaces it."""
    from eval import launch
    from eval import scenette as sweep
    from scenette import data, train_llava, train_vision

    assert not data.DATA_DIR.resolve().is_relative_to(REPO)
    assert train_vision.parse_args([]).run_dir == Path("runs/scenette")
    stage2 = train_llava.parse_args([])
    assert (stage2.run_dir, stage2.output) == (Path("runs/scenette"), None)  # None: RUN_DIR/model
    assert launch.parse_args(["v1_5", "mme", "64", "0.5"]).results == Path("results")
    assert sweep.parse_args([]).output.parent == Path("results/scenette/runs")  # a fresh run folder


# --- a built wheel, installed elsewhere, carries its data and runs the demo ----------------------


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (pyproject.toml, README, the packages): building in
    the checkout would reuse its build/ folder, whose stale files could hide a missing one."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for path in REPO.iterdir():
        if path.is_file():
            shutil.copy2(path, source)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in PACKAGES:
        shutil.copytree(REPO / package, source / package, ignore=skip)
    run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", str(tmp / "dist")])  # fmt: skip
    [built] = (tmp / "dist").glob("*.whl")
    return built


@pytest.mark.slow
def test_wheel_holds_the_checkpoint_the_task_files_and_the_notebooks(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    checkpoint = {f"scenette/scenette-llava/{p.name}" for p in CHECKPOINT.iterdir() if p.is_file()}
    assert {"scenette/scenette-llava/config.json", "scenette/scenette-llava/model.safetensors",
            "scenette/scenette-llava/tokenizer.json", "scenette/scenette-llava/training_log.txt"} <= checkpoint  # fmt: skip
    assert checkpoint <= names, sorted(checkpoint - names)
    tasks = {p.relative_to(REPO).as_posix() for p in TASKS.rglob("*") if p.name.endswith(("yaml", ".py"))}
    assert "eval/tasks/scenette/scenette.yaml" in tasks
    assert tasks <= names, sorted(tasks - names)
    notebooks = {p.relative_to(REPO).as_posix() for p in (REPO / "analysis").glob("*.ipynb")}
    assert notebooks and notebooks <= names, sorted(notebooks - names)


# Run where the checkout is not: the installed copy must be the one imported, and the demo must find
# the checkpoint inside it. PYTHONPATH comes before the editable install's finder (which
# site-packages appends to sys.meta_path, after the path-based one), so the copy wins; asserted.
CHECK_AND_RUN_DEMO = """
import runpy
import sys
from pathlib import Path

import llava
from scenette.model import CHECKPOINT

site = Path(sys.argv[1]).resolve()
assert Path(llava.__file__).resolve().is_relative_to(site), f"imported {llava.__file__}, not the installed copy"
assert CHECKPOINT.resolve().is_relative_to(site), CHECKPOINT
sys.argv = [sys.argv[2], "--output", "demo.png"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_outside_the_checkout(wheel, tmp_path):
    site, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q",
         "--target", str(site), str(wheel)])  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    done = run([sys.executable, "-c", CHECK_AND_RUN_DEMO, str(site), str(DEMO)], cwd=work, env=env)
    assert f"shipped checkpoint ({site.resolve() / 'scenette' / 'scenette-llava'})" in done.stdout, done.stdout
    assert "answer" in done.stdout and (work / "demo.png").is_file(), done.stdout
