"""VisPruner's diverse rounds as one C++ loop on the CPU (`rounds.cpp`), the route `compile=True` takes there.

The plain-torch rounds (`diversity.py`) pay an operator dispatch for each of the ~7 steps of each of
the ~R/8 rounds: at LLaVA-1.5's 544-token pool that is most of the selection's time. The C++ loop
reads the same row maxima and sorts by the same rule, so it keeps the same positions (tested against
the plain-torch rounds, ties and NaN included). It is built once per machine with the system's C++
compiler through `torch.utils.cpp_extension` (ninja; cached in torch's extensions folder, about 10 s
the first time) and loaded as the operator `torch.ops.vispruner.diverse_rounds`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("rounds.cpp")
LIBRARY = "vispruner_rounds"
EXACT_DTYPES = (torch.float32, torch.float64)  # the kernel's; half precision widens to float32 exactly

logger = logging.getLogger(__name__)


@functools.cache
def load() -> None:
    """Build (once per machine; later calls load the cached library) and register the operator.
    RuntimeError naming the cause when no C++ toolchain can build it."""
    logger.info("loading VisPruner's CPU rounds kernel (%s; built the first time on a machine)", SOURCE.name)
    try:
        from torch.utils.cpp_extension import load as build

        with _ninja_on_path():
            build(LIBRARY, [str(SOURCE)], extra_cflags=["-O3"], is_python_module=False)
    except Exception as error:  # the compiler's or ninja's message says what is missing
        raise RuntimeError(
            f"VisPruner(compile=True) on the CPU runs its rounds in a C++ kernel ({SOURCE}) built with "
            f"torch.utils.cpp_extension, and building it failed: {error}\nIt needs a C++ compiler (g++ or "
            "clang++) and ninja (pip install ninja); compile=False keeps the same tokens without it."
        ) from error


@contextlib.contextmanager
def _ninja_on_path():
    """torch runs `ninja` from PATH; a virtual environment used without activation has the pip
    package's binary off PATH, so put it there while building."""
    try:
        import ninja
    except ImportError:  # torch then names ninja as what is missing
        yield
        return
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, path])
    try:
        yield
    finally:
        os.environ["PATH"] = path


def diverse_rounds(similarity: torch.Tensor, keep: int, round_size: int) -> torch.Tensor:
    """Positions [B, keep] into the pool that survive the rounds, in the pool's final order, as
    `diversity.diverse_positions` returns them. similarity: [B, R, R] on the CPU."""
    load()
    if similarity.dtype not in EXACT_DTYPES:
        similarity = similarity.float()  # widening is exact: the same maxima, ties and order
    return torch.ops.vispruner.diverse_rounds(similarity, keep, round_size)
