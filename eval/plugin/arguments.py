"""The model arguments of the lmms-eval model `vispruner` that are checked before its checkpoint loads (tens
of seconds for a 7B model): kept apart from model.py, which imports lmms-eval, so that they are cheap to
call and to test. Each error is a ValueError naming the model argument, its value and what is allowed."""

from __future__ import annotations

from pathlib import Path

from efficiency.command import model_problem, output_problem


def check_device(requested) -> str:
    """`requested` if torch knows the device name (cpu, cuda, cuda:N, mps), else ValueError. Whether the
    machine has it is model.resolve_device's business (CUDA absent: the CPU, with a warning)."""
    import torch

    try:
        torch.device(requested)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device={requested}: not a device torch knows; allowed: cpu, cuda, cuda:N") from None
    return requested


def positive_int(value, name: str) -> int:
    """`value` (an int, or a string or float holding one, as model_args arrive) as an int >= 1."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def check_before_loading(pretrained, method: str, visual_token_num, options: dict, response_log) -> None:
    """The checkpoint's path (a folder with config.json, or a Hub id), the method and its budget, the
    response log's folder (writable): ValueError naming the model argument."""
    import llava

    problem = model_problem(str(pretrained))
    if problem:
        raise ValueError(f"pretrained={pretrained}: {problem}")
    methods = llava.list_methods()
    if method != "none" and method not in methods:
        raise ValueError(f"method={method}: unknown; allowed: none, {', '.join(methods)}")
    if method == "none" and (visual_token_num is not None or options):
        raise ValueError("method=none keeps every visual token: drop visual_token_num and method options")
    if method != "none":
        if visual_token_num is None:
            raise ValueError(f"visual_token_num is required with method={method} (e.g. visual_token_num=64)")
        positive_int(visual_token_num, "visual_token_num")
    problem = output_problem(Path(response_log), folder=True, exist_ok=True) if response_log else None
    if problem:
        raise ValueError(f"response_log={response_log}: {problem}")
