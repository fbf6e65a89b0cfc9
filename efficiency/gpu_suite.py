"""The GPU measurements in one run under a time budget, most wanted first.

    python -m efficiency.gpu_suite results/efficiency/gpu            # on a GPU (scripts/efficiency/gpu.sh)
    python -m efficiency.gpu_suite /tmp/rehearsal --device cpu --rehearse   # the same steps, tiny, seconds

At the LLaVA-1.5-7B and LLaVA-NeXT-7B shapes (random weights, float16, SDPA or FlashAttention 2),
in this order:
1. `efficiency.oracle_ttft` per shape: VisPruner eager and with compile=True (the selection's
   rounds replayed as one CUDA graph) against the same-token oracle, time to first token
   (batch 1) and batched prefill (batch 8), T = 64;
2. `efficiency.selection_scaling`: selection vs its similarity matmul for N = 576 .. 4608, eager
   and with compile=True (traced once per N);
3. `efficiency.latency` per shape: the full latency table, resumable, with whatever time is left.

Each step is its own process, stopped when the budget (`--budget`, seconds) runs out; a step that
fails is recorded with the end of its output and the next one runs (an oracle step that fails with
compile=True is tried once more without it). `suite.json` in the output folder lists each step's
command, seconds, exit status and the end of its output, and what was skipped for lack of time; each
step's whole output is kept beside its JSON (`.log`). `--rehearse` runs
every step at the tiny shape in float16 with minimal repeats: a check of the whole run on any machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .command import AUTO_DEVICE, DEVICE_HELP, atomic_write_json, output_problem, positive_int, resolve_device

SHAPES = ("llava-1.5-7b", "llava-next-7b")
DEFAULT_BUDGET_S = 480  # issue 19: one prepared run of at most 8 minutes
MIN_STEP_S = 20  # a step is not started with less left: it could not even build its model
OUTPUT_TAIL_CHARS = 2000

# Step options on a GPU, and the rehearsal's (the tiny shape, one short block each).
ORACLE = "--tokens 64 --batch 1 8 --rounds 5 --repeats 3 --warmup 2".split()
SCALING = "--dtype float16 --rounds 5 --warmup 2".split()  # a CUDA graph records on its 2nd call
LATENCY = "--tokens 128 64 32 --batch 1 8 32 --repeats 5 --warmup 2 --resume".split()
QUICK = "--dtype float16 --repeats 1 --warmup 0 --min-run-time 0".split()  # float16 as on the GPU
REHEARSAL = {
    "oracle_ttft": "--tokens 16 --batch 1 2 --rounds 1".split() + QUICK,
    "selection_scaling": "--sizes 80 160 --tokens 16 --width 32 --compile-up-to 80 --rounds 1".split() + QUICK,
    "latency": "--smoke --dtype float16 --resume".split(),
}


@dataclass
class Step:
    name: str
    module: str
    options: list[str]
    output: Path
    retry_options: list[str] = field(default_factory=list)  # a second try after a failure, if any


def plan(out: Path, device: str, shapes: list[str], slug: str, rehearse: bool) -> list[Step]:
    """The steps in the order they run."""
    on = ["--device", device]
    steps = []
    for name in shapes:
        options = [*on, "--shape", name, *(REHEARSAL["oracle_ttft"] if rehearse else ORACLE)]
        steps.append(Step(f"oracle_ttft {name}", "efficiency.oracle_ttft", options,
                          out / f"oracle-ttft-{name}-{slug}.json", retry_options=["--no-compile"]))  # fmt: skip
    options = [*on, *(REHEARSAL["selection_scaling"] if rehearse else SCALING)]
    steps.append(Step("selection_scaling", "efficiency.selection_scaling", options,
                      out / f"selection-scaling-{slug}.json", retry_options=["--no-compile"]))  # fmt: skip
    for name in shapes:
        options = [*on, "--shape", name, *(REHEARSAL["latency"] if rehearse else LATENCY)]
        steps.append(Step(f"latency {name}", "efficiency.latency", options, out / f"{name}-{slug}.json"))
    return steps


def run_step(step: Step, seconds_left: float) -> dict:
    """Runs one step (and its retry after a failure) within `seconds_left`; what happened, for suite.json."""
    record = {"step": step.name, "output": step.output.name, "tries": []}
    for extra in [[], step.retry_options] if step.retry_options else [[]]:
        if seconds_left < MIN_STEP_S:
            break
        command = [sys.executable, "-m", step.module, *step.options, *extra, "--output", str(step.output)]
        start = time.monotonic()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds_left)
            status, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as stopped:
            status, output = "stopped at the budget", _text(stopped.stdout) + _text(stopped.stderr)
        seconds = time.monotonic() - start
        seconds_left -= seconds
        step.output.with_suffix(".log").write_text(output)
        record["tries"].append({"command": command[1:], "seconds": round(seconds, 1), "status": status,
                                "output_tail": output[-OUTPUT_TAIL_CHARS:]})  # fmt: skip
        print(f"{step.name}{' ' + ' '.join(extra) if extra else ''}: {status} in {seconds:.0f} s", flush=True)
        if status == 0 or status == "stopped at the budget":
            break
    record["status"] = record["tries"][-1]["status"] if record["tries"] else "skipped: out of time"
    return record


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def run(args: argparse.Namespace) -> dict:
    from .hardware import describe, gpu_slug

    slug = gpu_slug() if args.device.startswith("cuda") else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget
    suite = {"budget_s": args.budget, "rehearsal": args.rehearse, "hardware": describe(args.device), "steps": []}
    for step in plan(args.out, args.device, args.shapes, slug, args.rehearse):
        suite["steps"].append(run_step(step, deadline - time.monotonic()))
        atomic_write_json(args.out / "suite.json", suite)  # after every step: a killed run keeps what it did
    return suite


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="a new or empty folder for the results and suite.json")
    parser.add_argument("--device", default=AUTO_DEVICE, help=DEVICE_HELP)
    parser.add_argument("--budget", type=positive_int, default=DEFAULT_BUDGET_S, help="seconds for all steps")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES, help="model shapes")
    parser.add_argument(
        "--rehearse", action="store_true", help="every step at the tiny shape in float16, minimal repeats"
    )
    args = parser.parse_args(argv)
    problem = output_problem(args.out, folder=True, exist_ok=True)
    if problem or (args.out.is_dir() and any(args.out.iterdir())):
        parser.error(f"out: {problem or f'{args.out} is not empty; choose a new folder'}")
    if args.rehearse:
        args.shapes = ["tiny"]
    args.device = resolve_device(args.device, parser)
    suite = run(args)
    failed = [record["step"] for record in suite["steps"] if record["status"] != 0]
    print(f"wrote {args.out}/suite.json" + (f"; not complete: {', '.join(failed)}" if failed else ""))


if __name__ == "__main__":
    main()
