"""The dependency locks cover every requirement, and the installed environment is the locked one.

requirements/cpu.txt and gpu.txt are written by `bash scripts/lock.sh` from pyproject.toml; these
tests read them (no network) and the environment the tests run in.
"""

import ast
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from support import PACKAGES

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "requirements"
LEFT_OUT = LOCKS / "lmms-eval-left-out.txt"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NOT_LOCKED = {"gpu"}  # flash-attn builds against the installed torch, on the user's CUDA machine
CPU_TARGET = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
              "platform_python_implementation": "CPython", "os_name": "posix"}  # fmt: skip


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]
    via: tuple[str, ...]

    def applies(self, environment: dict | None = None) -> bool:
        return self.marker is None or self.marker.evaluate(environment)


def read_lock(path: Path) -> list[Pin]:
    """Entries of a `uv pip compile --generate-hashes` file; anything but `name==version` fails."""
    pins, entry, via = [], None, []
    for line in path.read_text().splitlines() + [""]:
        if entry is not None and not line.startswith(" "):
            spec, *hashes = [part.strip() for part in entry.split("--hash=")]
            requirement = Requirement(spec)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{path.name}: {spec!r} is not pinned"
            names = tuple(canonicalize_name(v.split()[0]) for v in via if not v.startswith("-"))
            pins.append(Pin(canonicalize_name(requirement.name), Version(specifier.version), requirement.marker,
                            tuple(hashes), names))  # fmt: skip
            entry, via = None, []
        if line and not line.startswith(("#", " ")):
            entry = line.rstrip("\\ ")
        elif line.startswith("    --hash="):
            entry += " " + line.strip().rstrip("\\ ")
        elif line.strip().startswith("# via"):
            via += [line.strip()[len("# via") :].strip()] if line.strip() != "# via" else []
        elif line.startswith("    #   "):
            via.append(line.strip()[2:].strip())
    return pins


def requirements(extras: set[str] | None = None) -> list[Requirement]:
    """The project's requirements with the given extras (all but the unlocked ones by default),
    self-references (`vispruner[eval]`) expanded."""
    extras = set(PROJECT["optional-dependencies"]) - NOT_LOCKED if extras is None else extras
    found = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        for spec in PROJECT["optional-dependencies"][extra]:
            requirement = Requirement(spec)
            if canonicalize_name(requirement.name) != canonicalize_name(PROJECT["name"]):
                found.append(requirement)
    return found


def left_out() -> set[str]:
    lines = (line.split("#")[0].strip() for line in LEFT_OUT.read_text().splitlines())
    return {canonicalize_name(Requirement(line).name) for line in lines if line}


CPU = read_lock(LOCKS / "cpu.txt")
GPU = read_lock(LOCKS / "gpu.txt")


def test_every_entry_is_pinned_with_hashes():
    for pins in (CPU, GPU):
        assert pins and all(pin.hashes and all(h.startswith("sha256:") for h in pin.hashes) for pin in pins)


def target(python: str) -> dict:
    return {**CPU_TARGET, "python_version": python, "python_full_version": f"{python}.0"}


@pytest.mark.parametrize("lock, python", [("cpu", "3.11")] + [("gpu", v) for v in ("3.11", "3.12", "3.13", "3.14")])
def test_every_requirement_is_covered_by_the_lock(lock, python):
    environment = target(python)
    applicable = [pin for pin in (CPU if lock == "cpu" else GPU) if pin.applies(environment)]
    pins = {pin.name: pin for pin in applicable}
    assert len(pins) == len(applicable), f"requirements/{lock}.txt pins a package twice for Python {python}"
    for requirement in requirements():
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} (pyproject.toml) is not in requirements/{lock}.txt: bash scripts/lock.sh"
        assert requirement.specifier.contains(pins[name].version, prereleases=True), (
            f"requirements/{lock}.txt pins {name}=={pins[name].version}, outside {requirement}: bash scripts/lock.sh"
        )


def test_the_lock_keeps_the_cpu_build_of_torch_and_no_torchvision():
    (torch,) = [pin for pin in CPU if pin.name == "torch"]
    assert torch.version.local == "cpu"
    pinned = (LOCKS / "torch-cpu.in").read_text().split("torch==")[1].split()[0]
    assert torch.version == Version(pinned)
    assert not left_out() & {pin.name for pin in CPU + GPU}


def test_gpu_lock_differs_from_the_cpu_lock_only_in_torch_and_its_cuda_packages():
    cpu = {pin.name: pin.version for pin in CPU}
    gpu = {pin.name: pin for pin in GPU if pin.applies(CPU_TARGET)}
    assert set(cpu) <= set(gpu), f"missing from gpu.txt: {sorted(set(cpu) - set(gpu))}"
    differing = {name for name in cpu if gpu[name].version != cpu[name]}
    assert differing == {"torch"} and gpu["torch"].version == Version(cpu["torch"].public)
    for name in set(gpu) - set(cpu):  # only what torch's CUDA build brings in
        assert set(gpu[name].via) <= {"torch"} | (set(gpu) - set(cpu)), f"{name} comes in through {gpu[name].via}"


# --- the environment the tests run in ---


def installed_lock() -> list[Pin]:
    return CPU if metadata.version("torch").endswith("+cpu") else GPU


def test_installed_packages_are_at_their_locked_versions():
    wrong = []
    shared = {pin.name for pin in CPU} - {"torch"}  # torch and its CUDA packages are the GPU user's choice
    for pin in installed_lock():
        if pin.name in shared and pin.applies():
            try:
                installed = Version(metadata.version(pin.name))
            except metadata.PackageNotFoundError:
                installed = None
            if installed != pin.version:
                wrong.append(f"{pin.name}: installed {installed}, locked {pin.version}")
    assert not wrong, "the environment is not the lock's (bash scripts/setup_cpu.sh):\n" + "\n".join(wrong)


@pytest.mark.slow
def test_pip_check_reports_only_the_deliberately_left_out_requirements():
    declared = {canonicalize_name(Requirement(r).name) for r in metadata.requires("lmms-eval")
                if "extra ==" not in r}  # fmt: skip
    assert left_out() <= declared, f"not lmms-eval requirements: {sorted(left_out() - declared)}"
    report = subprocess.run([sys.executable, "-m", "pip", "check"], check=False, capture_output=True, text=True).stdout
    unexpected = []
    for line in report.splitlines():
        missing = re.fullmatch(r"(\S+) \S+ requires (\S+), which is not installed\.", line)
        if not (
            missing and canonicalize_name(missing[1]) == "lmms-eval" and canonicalize_name(missing[2]) in left_out()
        ):
            unexpected.append(line)
    assert not unexpected, "\n".join(unexpected)


def imported_top_level_modules(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_every_third_party_import_is_a_declared_requirement():
    ours = set(PACKAGES) | {path.stem for path in (REPO / "tests").glob("*.py")}
    declared = {canonicalize_name(r.name) for r in requirements(set(PROJECT["optional-dependencies"]))}
    owners = metadata.packages_distributions()
    undeclared = []
    for folder in [*PACKAGES, "examples", "tests"]:
        for module in sorted(imported_top_level_modules(REPO / folder) - ours - set(sys.stdlib_module_names)):
            # a module that is not installed (an optional GPU package) is named like its distribution
            distributions = {canonicalize_name(d) for d in owners.get(module, [module])}
            if not distributions & declared:
                undeclared.append(f"{folder}/ imports {module} ({', '.join(sorted(distributions))})")
    assert not undeclared, "declare these in pyproject.toml:\n" + "\n".join(undeclared)


@pytest.mark.slow
def test_every_task_the_scripts_run_loads_with_the_locked_packages():
    """lmms-eval runs each task's hooks (its utils.py); they must import with what is installed."""
    from lmms_eval.tasks import TaskManager
    from lmms_eval.utils import load_yaml_config

    from eval.benchmarks import BENCHMARKS

    manager = TaskManager("ERROR", include_path=str(REPO / "eval" / "tasks"))
    names = [task for benchmark in BENCHMARKS.values() for task in benchmark.tasks] + ["scenette"]
    loaded = 0
    while names:
        entry = manager.task_index[names.pop()]
        config = load_yaml_config(entry["yaml_path"], mode="full")  # imports the `!function` hooks
        if entry["type"] == "group":
            names += [task if isinstance(task, str) else task["task"] for task in config["task"]]
        loaded += 1
    assert loaded >= len(BENCHMARKS)
