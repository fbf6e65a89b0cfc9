"""The numbers VisPruner's paper reports (project-page tables, see the reference notes), for comparison rows.

Keys: family -> (method, budget) -> {benchmark or summary: value}. Budget None is the unpruned
model; every other budget is the launcher's TOKENS in the cell the paper recipe (eval/paper_tables.py,
`Recipe.budget`) runs for the paper's row, so a results row is matched by (method, tokens):

- LLaVA-1.5 (`table1`): tokens per image, 128/64/32, every method.
- LLaVA-NeXT (`llava-next`, paper mode: 5 crops x 576): the paper's rows 640/320/160 are 128/64/32 per crop
  for the vision-side methods (VisionZip, VisPruner) and 640/320/160 per image for the in-LLM ones (FastV,
  SparseVLM), which keep that many of the 2880 crop tokens.
- Video-LLaVA (`video`): 455/227/114 per video for FastV and VisPruner, which the recipe runs with extra
  model arguments (FastV: frame_cls=false; VisPruner: frame_cls=false, video_token_num=<tokens>,
  video_split=even); eval.tables matches a row to the paper's only when it carries the recipe's
  options (`paper_tables.paper_options`), so a per-frame `vispruner 455` run is not compared.
"""

from __future__ import annotations

_V15_COLUMNS = (
    "vqav2",
    "gqa",
    "vizwiz",
    "sqa",
    "textvqa",
    "pope",
    "mme",
    "mmbench",
    "mmbench_cn",
    "mmvet",
    "Acc.",
    "Rel.",
)
_V15 = {
    ("none", None): (78.5, 62.0, 50.0, 66.8, 58.2, 85.9, 1510.7, 64.3, 58.3, 31.1, 63.1, 100.0),
    ("tome", 128): (63.0, 52.4, 50.5, 59.6, 49.1, 62.8, 1088.4, 53.3, 48.8, 27.2, 52.1, 83.9),
    ("fastv", 128): (61.8, 49.6, 51.3, 60.2, 50.6, 59.6, 1208.9, 56.1, 51.4, 28.1, 52.9, 85.4),
    ("sparsevlm", 128): (73.8, 56.0, 51.4, 67.1, 54.9, 80.5, 1376.2, 60.0, 51.1, 30.0, 59.4, 94.4),
    ("prumerge+", 128): (74.7, 57.8, 52.4, 67.6, 54.3, 81.5, 1420.5, 61.3, 54.7, 28.7, 60.4, 95.8),
    ("visionzip", 128): (75.6, 57.6, 52.0, 68.9, 56.8, 83.2, 1432.4, 62.0, 56.7, 32.6, 61.7, 98.4),
    ("vispruner", 128): (75.8, 58.2, 52.7, 69.1, 57.0, 84.6, 1461.4, 62.7, 57.3, 33.7, 62.4, 99.6),
    ("tome", 64): (57.1, 48.6, 50.2, 50.0, 45.3, 52.5, 922.3, 43.7, 38.9, 24.1, 45.7, 73.9),
    ("fastv", 64): (55.0, 46.1, 50.8, 51.1, 47.8, 48.0, 1019.6, 48.0, 42.7, 25.8, 46.6, 75.9),
    ("sparsevlm", 64): (68.2, 52.7, 50.1, 62.2, 51.8, 75.1, 1221.1, 56.2, 46.1, 23.3, 54.7, 86.4),
    ("prumerge+", 64): (67.4, 54.9, 52.9, 68.6, 53.0, 77.4, 1198.2, 59.3, 51.0, 25.9, 57.0, 90.6),
    ("visionzip", 64): (72.4, 55.1, 52.9, 69.0, 55.5, 77.0, 1365.6, 60.1, 55.4, 31.7, 59.7, 95.6),
    ("vispruner", 64): (72.7, 55.4, 53.3, 69.1, 55.8, 80.4, 1369.9, 61.3, 55.1, 32.3, 60.4, 96.6),
    ("tome", 32): (46.8, 43.6, 51.3, 41.4, 38.3, 39.0, 828.4, 31.6, 28.1, 17.3, 37.9, 61.4),
    ("fastv", 32): (43.4, 41.5, 51.7, 42.6, 42.5, 32.5, 884.6, 37.8, 33.2, 20.7, 39.0, 64.1),
    ("sparsevlm", 32): (58.6, 48.3, 51.9, 57.3, 46.1, 67.9, 1046.7, 51.4, 40.6, 18.6, 49.3, 77.9),
    ("prumerge+", 32): (54.9, 51.1, 52.8, 68.5, 50.6, 70.9, 940.8, 56.8, 47.0, 21.4, 52.1, 83.0),
    ("visionzip", 32): (67.1, 51.8, 52.9, 68.8, 53.1, 68.7, 1247.4, 57.7, 50.3, 25.5, 55.8, 89.0),
    ("vispruner", 32): (67.7, 52.2, 53.0, 69.2, 53.9, 72.7, 1271.0, 58.4, 52.7, 28.8, 57.2, 91.5),
}

_V16_COLUMNS = ("vqav2", "gqa", "textvqa", "pope", "mme", "Acc.", "Rel.")
_V16 = {
    ("none", None): (81.2, 62.9, 59.6, 86.3, 1513.8, 73.1, 100.0),
    ("fastv", 640): (78.9, 60.4, 58.4, 83.1, 1477.3, 70.9, 97.0),
    ("sparsevlm", 640): (78.2, 59.1, 56.2, 80.9, 1456.3, 69.4, 94.9),
    ("visionzip", 128): (79.2, 60.1, 58.5, 82.2, 1468.4, 70.7, 96.7),
    ("vispruner", 128): (79.8, 61.6, 59.3, 85.9, 1480.7, 72.1, 98.6),
    ("fastv", 320): (71.9, 55.9, 55.7, 71.7, 1282.9, 63.9, 87.7),
    ("sparsevlm", 320): (71.4, 56.5, 52.4, 73.5, 1342.7, 64.2, 87.9),
    ("visionzip", 64): (74.2, 58.1, 55.3, 75.0, 1348.8, 66.0, 90.5),
    ("vispruner", 64): (75.7, 58.4, 57.6, 80.4, 1370.1, 68.1, 93.3),
    ("fastv", 160): (61.8, 49.8, 51.9, 51.7, 1079.5, 53.8, 74.7),
    ("sparsevlm", 160): (62.2, 50.2, 45.1, 54.6, 1167.1, 54.1, 74.5),
    ("visionzip", 32): (67.3, 54.3, 54.7, 59.4, 1239.7, 59.5, 82.3),
    ("vispruner", 32): (70.6, 54.7, 56.0, 72.9, 1226.0, 63.1, 86.7),
}

_VIDEO_COLUMNS = (
    "TGIF Acc",
    "TGIF Score",
    "MSVD Acc",
    "MSVD Score",
    "MSRVTT Acc",
    "MSRVTT Score",
    "Avg Acc",
    "Avg Score",
)
_VIDEO = {
    ("none", None): (19.8, 2.53, 70.5, 3.93, 57.5, 3.50, 49.3, 3.32),
    ("fastv", 455): (19.2, 2.50, 69.1, 3.91, 54.4, 3.42, 47.6, 3.28),
    ("vispruner", 455): (18.4, 2.49, 70.2, 3.95, 56.7, 3.50, 48.4, 3.31),
    ("fastv", 227): (14.3, 2.42, 68.9, 3.90, 53.0, 3.40, 45.4, 3.24),
    ("vispruner", 227): (15.9, 2.41, 69.3, 3.92, 55.6, 3.45, 46.9, 3.26),
    ("fastv", 114): (10.6, 2.29, 64.1, 3.78, 52.4, 3.39, 42.4, 3.15),
    ("vispruner", 114): (14.1, 2.35, 65.4, 3.79, 54.1, 3.41, 44.5, 3.18),
}

PAPER = {
    family: {key: dict(zip(columns, values)) for key, values in rows.items()}
    for family, columns, rows in (
        ("v1_5", _V15_COLUMNS, _V15),
        ("v1_6", _V16_COLUMNS, _V16),
        ("video", _VIDEO_COLUMNS, _VIDEO),
    )
}
PAPER_LABELS = {"v1_5": "paper, LLaVA-1.5-7B", "v1_6": "paper, LLaVA-NeXT-7B", "video": "paper, Video-LLaVA-7B"}


def canonical_method(name: str) -> str:
    """Method names as the paper's rows are keyed: lower case, 'plus' -> '+', no '-' or '_'."""
    return name.lower().replace("_", "").replace("-", "").replace("plus", "+")


def family_of(model_folder: str) -> str | None:
    """The paper table a model folder compares with (7B models only: the paper's tables are 7B)."""
    name = model_folder.lower()
    if "7b" not in name:
        return None
    if "video" in name:
        return "video"
    if "v1.6" in name or "next" in name:
        return "v1_6"
    if "v1.5" in name or "1.5" in name:
        return "v1_5"
    return None


def paper_row(family: str, method: str, tokens: int | None, options: dict[str, str] | None = None) -> dict | None:
    """The paper's numbers for a results row of `family` (method, TOKENS, extra model arguments `options`), or None.
    A row matches only if it carries every option the paper recipe runs that cell with (Video-LLaVA's frame_cls=false,
    ...); other options (dtype, ...) do not prevent a match."""
    reported = PAPER.get(family, {}).get((canonical_method(method) if method != "none" else "none", tokens))
    if reported is None or method == "none":
        return reported
    from .paper_tables import paper_options  # here: eval.paper_tables imports the table renderer, which imports this

    required = paper_options(family, method, tokens) or {}
    return reported if all((options or {}).get(key) == value for key, value in required.items()) else None
