"""What the measurement commands share: the device and thread options, the rule that a report never
overwrites a file, and how a finished report is printed and saved."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from . import timing

AUTO_DEVICE = "auto"
DEVICE_HELP = "cpu, cuda, cuda:N; default: cuda when torch sees one"


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=AUTO_DEVICE, help=DEVICE_HELP)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, help="write the report as JSON here (refuses to overwrite)")


def refuse_existing_output(parser: argparse.ArgumentParser, output: Path | None) -> None:
    if output is not None and output.exists():
        parser.error(f"--output: {output} exists; choose another path")


def resolve_device(device: str) -> str:
    """`--device` as torch names it: `auto` is cuda when torch sees a GPU, else cpu (imports torch)."""
    import torch

    if device != AUTO_DEVICE:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def start_torch(args: argparse.Namespace):
    """Import torch (after parsing, so `--help` and argument errors answer at once), resolve
    `--device auto` and apply `--threads`; returns the torch module."""
    import torch

    args.device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch


def save_report(report: dict, output: Path | None) -> None:
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {output}")


def measure_and_report(parser: argparse.ArgumentParser, args: argparse.Namespace, run: Callable, render: Callable):
    """A measurement command after parsing: check the timing options and the output path, start torch,
    run, print the rendered report and save it."""
    timing.check_arguments(parser, args)
    refuse_existing_output(parser, args.output)
    start_torch(args)
    report = run(args)
    print(render(report))
    save_report(report, args.output)
