"""What the command lines share: the device and thread options, the checks every command makes before it
loads a model or starts any work, the rule that a report never overwrites a file, and how results are
written (atomically) and read back (naming the file that cannot be used).

The checks answer at once: they import nothing heavy (torch only where a device is checked), and an error
names the argument or file, the value, and what is allowed. Every command line of eval/, efficiency/,
analysis/ and scenette/ uses them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from . import timing

AUTO_DEVICE = "auto"
DEVICE_HELP = "cpu, cuda, cuda:N; default: cuda when torch sees one"
DEVICE_TYPES = ("cpu", "cuda", "mps")
LOOPBACK = ("localhost", "127.0.0.1", "::1")


# --- argparse value types: the error names the option, the value and what is allowed -------------


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (not 0, a negative, a fraction, NaN or True)."""
    return _int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _int(text, 0, "an integer >= 0")


def _int(text: str, low: int, allowed: str) -> int:
    value = text.strip() if isinstance(text, str) else text
    if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d+", str(value)) or int(value) < low:
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
    return int(value)


def finite_float(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Callable:
    """An argparse type: a finite number (no NaN or infinity) in [low, high] (`low_open`: low excluded)."""
    allowed = "a finite number" + _range_words(low, high, low_open)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if not number_in(value, low, high, low_open):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    parse.__name__ = "number"  # argparse names the type in its own messages
    return parse


def _range_words(low, high, low_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" <= {high:g}"
    return ""


def number_in(value, low=None, high=None, low_open: bool = False) -> bool:
    """Whether `value` is a real, finite number (not a bool) in [low, high] (`low_open`: low excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if low is not None and (value <= low if low_open else value < low):
        return False
    return high is None or value <= high


fraction = finite_float(0.0, 1.0)  # an argparse type: a number in [0, 1]


def check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace, rules: dict) -> None:
    """parser.error for the first parsed value breaking its rule. `rules`: {dest: (low, high)} with None for
    an open end; a list value is checked item by item; None (an option not given) passes."""
    for dest, (low, high) in rules.items():
        value = getattr(args, dest, None)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None and not number_in(item, low, high):
                option = "--" + dest.replace("_", "-")
                parser.error(f"{option}: must be a finite number{_range_words(low, high, False)}, got {item!r}")


# --- devices ---------------------------------------------------------------------------------------


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=AUTO_DEVICE, help=DEVICE_HELP)
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")


def resolve_device(device: str, parser: argparse.ArgumentParser | None = None, option: str = "--device") -> str:
    """`--device` as torch names it: `auto` is cuda when torch sees a GPU, else cpu (imports torch). With
    `parser`, a device this machine cannot provide is a parser.error naming it (before any model loads)."""
    import torch

    if device == AUTO_DEVICE:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if parser is not None:
        problem = device_problem(device)
        if problem:
            parser.error(f"{option} {device}: {problem}")
    return device


def device_problem(device: str) -> str | None:
    """Why torch cannot run on `device` here (None: it can): a name torch does not know, CUDA absent, an
    index past the GPUs this machine has. Imports torch."""
    import torch

    allowed = "allowed: cpu, cuda, cuda:N" + (", mps" if _mps_available() else "")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return f"not a device torch knows; {allowed}"
    if parsed.type not in DEVICE_TYPES:
        return f"not a device these commands run on; {allowed}"
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            return f"this torch ({torch.__version__}) sees no CUDA device; use --device cpu"
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            return f"this machine has {count} CUDA device(s): cuda:0 to cuda:{count - 1}"
    if parsed.type == "mps" and not _mps_available():
        return f"this torch sees no MPS device; {allowed}"
    return None


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    """--dtype and --attn of the commands that build a model; `model_precision` resolves them."""
    parser.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        help="default: float16 on a GPU, float32 on a CPU (bf16 is slow on CPUs without AMX)",
    )
    parser.add_argument(
        "--attn",
        default="auto",
        choices=["auto", "sdpa", "flash_attention_2"],
        help="attention kernels; auto = FlashAttention 2 on a GPU when flash-attn is installed, else SDPA",
    )


def model_precision(args: argparse.Namespace) -> tuple[str, str]:
    """(dtype, attention implementation) for the resolved `args.device`, from --dtype and --attn."""
    on_gpu = args.device.startswith("cuda")
    dtype = args.dtype or ("float16" if on_gpu else "float32")
    attention = args.attn
    if attention == "auto":
        attention = "flash_attention_2" if on_gpu and _has_flash_attention() else "sdpa"
    return dtype, attention


def _has_flash_attention() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def start_torch(args: argparse.Namespace):
    """Import torch (after parsing, so `--help` and argument errors answer at once), resolve
    `--device auto` and apply `--threads`; returns the torch module."""
    import torch

    args.device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch


# --- models ----------------------------------------------------------------------------------------


def model_problem(model: str | os.PathLike) -> str | None:
    """Why `model` names no checkpoint (None: it may): a local path that does not exist and is not a Hub id
    either ("org/name"), or a local folder without config.json. Nothing is downloaded or loaded."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            return f"the folder {path} holds no config.json (not a checkpoint)"
        return None
    if path.exists():
        return f"{path} is a file, not a checkpoint folder"
    if is_hub_id(str(model)):
        return None
    return "no such folder, and not a Hugging Face Hub id (org/name) either"


def is_hub_id(text: str) -> bool:
    """Whether `text` has the form of a Hub repository id ("name" or "org/name")."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


# --- outputs ---------------------------------------------------------------------------------------


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, help="write the report as JSON here (refuses to overwrite)")


def refuse_existing_output(parser: argparse.ArgumentParser, output: Path | None, option: str = "--output") -> None:
    """parser.error if `output` exists or cannot be created (its folder is a file or read-only)."""
    problem = output_problem(output)
    if problem:
        parser.error(f"{option}: {problem}")


def output_problem(path: Path | None, *, folder: bool = False, exist_ok: bool = False) -> str | None:
    """Why `path` cannot be written (None: it can; so can None, no output). A file must not exist (unless
    `exist_ok`); a folder may exist (`exist_ok`) but must then be a writable folder. A path that does not
    exist needs its nearest existing parent to be a writable folder. Nothing is created."""
    if path is None:
        return None
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not exist_ok:
            return f"{path} exists; choose another path"
        if folder and not path.is_dir():
            return f"{path} is a file, not a folder"
        if not folder and path.is_dir():
            return f"{path} is a folder, not a file"
        target = path if folder else path.parent
        return None if writable(target) else f"{target} is read-only"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, so {path} cannot be created"
    if not writable(parent):
        return f"{parent} is read-only, so {path} cannot be created"
    return None


def writable(folder: Path) -> bool:
    """A folder this process may create files in. A folder without any write permission bit counts as
    read-only even for root, who could write there: it was made read-only on purpose."""
    return os.access(folder, os.W_OK | os.X_OK) and bool(folder.stat().st_mode & 0o222)


def check_output(parser: argparse.ArgumentParser, option: str, path: Path | None, **kwargs) -> None:
    """parser.error naming `option` if output_problem(path, **kwargs) finds one."""
    problem = output_problem(path, **kwargs)
    if problem:
        parser.error(f"{option}: {problem}")


def check_input(parser: argparse.ArgumentParser, option: str, path: Path | None, *, folder: bool = False) -> None:
    """parser.error naming `option` unless `path` (when given) is an existing readable file (or folder)."""
    if path is None:
        return
    path = Path(path)
    kind = "folder" if folder else "file"
    if not path.exists():
        parser.error(f"{option}: {path} does not exist (expected a {kind})")
    if folder != path.is_dir():
        parser.error(f"{option}: {path} is a {'folder' if path.is_dir() else 'file'}, expected a {kind}")
    if not os.access(path, os.R_OK):
        parser.error(f"{option}: {path} cannot be read")


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(temporary)` with a temporary path beside `path`, then rename it to `path`: a reader sees
    the old file or the whole new one, never half of it; a failure removes the temporary and leaves `path`
    as it was. Creates the parent folders. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + path.suffix, dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~UMASK)  # mkstemp's file is private; the result gets the usual mode
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
    os.umask(mask)
    return mask


UMASK = _umask()


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, value) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def save_report(report: dict, output: Path | None) -> None:
    if output is not None:
        atomic_write_json(output, report)
        print(f"wrote {output}")


# --- results read back -----------------------------------------------------------------------------


class ResultFileError(ValueError):
    """A result file that cannot be used: unreadable, not JSON, or not the kind of result expected. The
    message names the file; the file itself is left exactly as it is (never moved, renamed or deleted)."""


LEFT_AS_IT_IS = "it is left as it is: move it away or repair it"


def read_json(path: Path, required: Iterable[str] = (), what: str = "a result file", kind: type = dict):
    """The JSON value of `path`, which must be a `kind` (dict: holding the `required` keys); anything else
    is a ResultFileError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ResultFileError(f"{path}: cannot be read ({error}); {LEFT_AS_IT_IS}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        words = "empty" if not text.strip() else f"not valid JSON ({error})"
        raise ResultFileError(f"{path}: {words}; expected {what} (a half-written file?); {LEFT_AS_IT_IS}") from None
    if not isinstance(value, kind):
        raise ResultFileError(f"{path}: holds a JSON {type(value).__name__}, not {what}; {LEFT_AS_IT_IS}")
    missing = [key for key in required if key not in value] if isinstance(value, dict) else []
    if missing:
        raise ResultFileError(f"{path}: not {what}: no {', '.join(missing)}; {LEFT_AS_IT_IS}")
    return value


def read_jsonl(path: Path, what: str = "a log") -> list:
    """The JSON lines of an append-only log. A last line without its newline may be cut short (a crash while
    appending): it is skipped, so its entry is made again; any other line that is not JSON is a
    ResultFileError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ResultFileError(f"{path}: cannot be read ({error}); {LEFT_AS_IT_IS}") from None
    lines = text.splitlines()
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines) and not text.endswith("\n"):
                continue  # cut short by a crash
            raise ResultFileError(
                f"{path}, line {number}: not JSON ({error}); expected {what}; {LEFT_AS_IT_IS}"
            ) from None
        if not isinstance(entry, dict):
            raise ResultFileError(f"{path}, line {number}: not a JSON object; expected {what}; {LEFT_AS_IT_IS}")
        entries.append(entry)
    return entries


# --- the measurement commands ----------------------------------------------------------------------

# Options of the measurement commands that count things: at least 1 when given (efficiency.selection's
# --tokens and --batch, baselines' --tokens, received_attention's --crops, --threads everywhere).
COUNTS = ("tokens", "batch", "threads", "crops")


def check_measurement_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What every measurement command checks before torch starts: the timing options (finite), the counts
    (>= 1), an important ratio in [0, 1], the output path, and the device."""
    check_numbers(parser, args, {"min_run_time": (0, None), "ratio": (0, 1)})
    timing.check_arguments(parser, args)
    check_numbers(parser, args, {name: (1, None) for name in COUNTS})
    refuse_existing_output(parser, getattr(args, "output", None))
    if hasattr(args, "device"):
        args.device = resolve_device(args.device, parser)


def measure_and_report(parser: argparse.ArgumentParser, args: argparse.Namespace, run: Callable, render: Callable):
    """A measurement command after parsing: check the arguments, the output path and the device, start
    torch, run, print the rendered report and save it."""
    check_measurement_arguments(parser, args)
    start_torch(args)
    report = run(args)
    print(render(report))
    save_report(report, args.output)
