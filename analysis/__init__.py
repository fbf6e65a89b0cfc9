"""Recreate the paper's attention-shift (Figure 2) and dispersion (Figure 3) analyses, and pictures of
the tokens VisPruner, FastV and random selection keep, for any LLaVA-style model the project supports.

>>> from analysis import open_study, plots
>>> study = open_study()                       # the default model and question set (analysis/subjects.py)
>>> plots.shift_figure(study.shift())          # Fig. 2 (a), (b), (c)
>>> plots.dispersion_figure(study.dispersion())

`python -m analysis` regenerates every figure in `figures/`.
"""

import importlib

# Public names and the submodule holding each, imported on first use: `python -m analysis --help` and
# `python -m analysis.notebooks --help` then answer without importing torch or the model classes.
_EXPORTS = {
    "DEFAULT_DATASET": "defaults",
    "DEFAULT_MODEL": "defaults",
    "Settings": "study",
    "Study": "study",
    "load_dataset": "subjects",
    "load_model": "subjects",
    "open_study": "study",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
