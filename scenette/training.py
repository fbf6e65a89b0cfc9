"""What both training stages share: seeds, the learning-rate schedule, a resumable loop with a
progress bar and a log file."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from efficiency.command import ResultFileError

from .data import TRAIN_SEED_STRIDE


def train_scene_seeds(run_seed: int, stage_offset: int, step: int, batch_size: int) -> list[int]:
    """Scene seeds of one training batch; a pure function of (run seed, stage, step), so resuming
    at any step sees exactly the data an uninterrupted run would have seen."""
    base = run_seed * TRAIN_SEED_STRIDE + stage_offset + step * batch_size
    return list(range(base, base + batch_size))


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float = 0.05) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


STATE_KEYS = ("step", "modules", "optimizer", "torch_rng")


def load_state(path: Path) -> dict:
    """A resumable training state saved by `run_loop`, read with `torch.load(weights_only=True)`: tensors,
    numbers, strings and containers only, so a state file from an untrusted run folder cannot run code
    (a pickle could). A file that is not such a state is a ResultFileError naming it (left as it is)."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - torch raises many kinds (UnpicklingError, RuntimeError, EOFError...)
        raise ResultFileError(f"{path}: not a training state this code can resume from ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); it is left as it is: move it away "
                              "to start that stage afresh") from None  # fmt: skip
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise ResultFileError(f"{path}: not a training state: no {', '.join(missing)}; it is left as it is")
    return state


def save_folder(output: Path, save: Callable[[Path], None]) -> Path:
    """Write a model folder: `save(temporary)` into a fresh folder beside `output`, then each file moved in by
    rename, so every file there is whole (old or new, never half written); files of `output` the save does
    not write (a training log) stay. Returns `output`."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        save(temporary)
        output.mkdir(exist_ok=True)
        for path in sorted(temporary.iterdir()):
            os.replace(path, output / path.name)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return output


class Log:
    """Appends timestamped lines to a file (and nothing to stdout, where the progress bar lives)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str) -> None:
        with self.path.open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def run_loop(
    name: str,
    run_dir: Path,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], dict[str, float]],
    total_steps: int,
    peak_lr: float,
    warmup: int,
    save_every: int,
    log: Log,
    on_save: Callable[[int], None] | None = None,
) -> dict:
    """Run `step_fn(step)` (forward + backward, returning metrics) from the last saved step to
    `total_steps`, stepping `optimizer` with a cosine schedule; saves a resumable state every
    `save_every` steps and at the end (then calls `on_save(step)`). Returns the wall and CPU seconds of this call and the step it
    resumed from. (CPU seconds show the cost on a shared machine, where wall time depends on the
    other jobs.)"""
    state_path = run_dir / f"{name}-state.pt"
    start = 0
    if state_path.exists():
        state = load_state(state_path)
        for key, module in modules.items():
            module.load_state_dict(state["modules"][key])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start = state["step"]
        log(f"{name}: resumed at step {start} from {state_path}")
    else:
        log(f"{name}: starting, {total_steps} steps")

    def save(step: int) -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save(
            {
                "step": step,
                "modules": {k: m.state_dict() for k, m in modules.items()},
                "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
            },
            tmp,
        )
        tmp.replace(state_path)

    params = [p for group in optimizer.param_groups for p in group["params"]]
    began, cpu_began = time.perf_counter(), time.process_time()
    running: dict[str, float] = {}
    bar = tqdm(range(start, total_steps), desc=name, initial=start, total=total_steps, dynamic_ncols=True)
    for step in bar:
        lr = cosine_lr(step, total_steps, peak_lr, warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        metrics = step_fn(step)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for key, value in metrics.items():
            running[key] = 0.9 * running.get(key, value) + 0.1 * value
        bar.set_postfix({k: f"{v:.3f}" for k, v in list(running.items())[:4]})
        if (step + 1) % 25 == 0 or step + 1 == total_steps:
            log(
                f"{name} step {step + 1}/{total_steps} lr {lr:.2e} "
                + json.dumps({k: round(v, 4) for k, v in running.items()})
            )
        if (step + 1) % save_every == 0 or step + 1 == total_steps:
            save(step + 1)
            if on_save is not None:
                on_save(step + 1)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began
    log(
        f"{name}: done, {total_steps - start} steps in {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU ({torch.get_num_threads()} threads)"
    )
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "resumed_from": start}
