"""Make PyPI's CUDA build of torchvision importable beside the CPU build of torch.

vLLM imports transformers' image utilities (and its LLaVA and Qwen files their image processors),
which import `torchvision` (`transforms.v2`, `io`: pure Python). Importing any of torchvision runs its
package `__init__`, which registers fake kernels for its C++ operators. PyPI has only CUDA builds of
torchvision for Linux; their C++ library cannot load beside a CPU torch, the operators stay
undefined, and two registrations (`nms`, `qnms`, the only ones not guarded by "did the library
load") raise "operator torchvision::nms does not exist", so `from vllm import LLM` fails.

`install()` adds an import hook that, just before `torchvision._meta_registrations` runs and only if
torchvision's C++ library did not load, defines those two operators' schemas: the import then
finishes, the detection operators have no kernel (calling them raises), and nothing vLLM's image
models run calls them. vLLM imports torchvision before it loads plugins, so the hook must be in
place at interpreter start: scripts/setup_vllm_cpu.sh writes a `.pth` file calling `install()` into
the environment, and only when torchvision fails to import without it (a CPU build of torchvision,
from PyTorch's CPU index, needs nothing). No installed file is edited.
"""

from __future__ import annotations

import importlib.abc
import sys

HOOKED_MODULE = "torchvision._meta_registrations"
# The operators whose fake kernels torchvision 0.28 registers unconditionally, as torchvision declares them.
UNGUARDED_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIBRARIES: list = []  # a torch Library's definitions last as long as the object


def define_unguarded_schemas() -> None:
    """Define the schemas of `UNGUARDED_SCHEMAS` unless torchvision's C++ library defined them (once)."""
    from torchvision import extension  # imported by torchvision's __init__ before its meta registrations

    if extension._has_ops() or _LIBRARIES:
        return
    import torch

    library = torch.library.Library("torchvision", "DEF")
    for schema in UNGUARDED_SCHEMAS:
        library.define(schema)
    _LIBRARIES.append(library)


class _BeforeMetaRegistrations(importlib.abc.MetaPathFinder):
    """Runs `define_unguarded_schemas` when torchvision imports its meta registrations; finds nothing
    itself, so the ordinary finders load the module."""

    def find_spec(self, fullname, path, target=None):
        if fullname == HOOKED_MODULE:
            define_unguarded_schemas()
        return None


def install() -> None:
    """Put the hook first on `sys.meta_path` (idempotent; imports nothing)."""
    if not any(isinstance(finder, _BeforeMetaRegistrations) for finder in sys.meta_path):
        sys.meta_path.insert(0, _BeforeMetaRegistrations())
