"""Recreate the paper's attention-shift (Figure 2) and dispersion (Figure 3) analyses, and pictures of
the tokens VisPruner, FastV and random selection keep, for any LLaVA-style model the project supports.

>>> from analysis import open_study, plots
>>> study = open_study()                       # the default model and question set (analysis/subjects.py)
>>> plots.shift_figure(study.shift())          # Fig. 2 (a), (b), (c)
>>> plots.dispersion_figure(study.dispersion())

`python -m analysis` regenerates every figure in `figures/`.
"""
from .study import Settings, Study, open_study
from .subjects import DEFAULT_DATASET, DEFAULT_MODEL, load_dataset, load_model

__all__ = ["DEFAULT_DATASET", "DEFAULT_MODEL", "Settings", "Study", "load_dataset", "load_model", "open_study"]
