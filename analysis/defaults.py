"""The defaults of every analysis command, notebook and function, in a module that imports nothing heavy
(so `python -m analysis --help` answers at once): the project's own trained small LLaVA
(Scenette-LLaVA) and its procedurally generated benchmark. Point these elsewhere to change them.
"""

from pathlib import Path

DEFAULT_MODEL = "scenette"
DEFAULT_DATASET = "scenette"
DEFAULT_QUESTIONS_PER_TYPE = 40  # Scenette: the first 40 questions of each of its 6 types (240 in all)
DEFAULT_BUDGET = 64  # tokens kept by Fig. 2(a)'s selection and Fig. 3's pruning (the paper's main budget)
SMOKE_QUESTIONS = 6  # drawn questions of a smoke run (a random-weight model, to check the pipeline)
RESULTS = Path("results/analysis")
