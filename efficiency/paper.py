"""The paper's FLOPs and KV-cache accounting, and its LLaVA-NeXT-7B efficiency table to check it against.

The paper's formula as printed is not available; this accounting was reconstructed so that it
reproduces every FLOPs cell of the FasterVLM v1 and VisPruner efficiency tables (see the reference
notes, section 4):

* vision tower, per 336 x 336 crop: 24 layers x (8 n d^2 + 4 n^2 d + 4 n d m) with n = 577 tokens
  ([CLS] included), d = 1024, m = 4096 (a multiply-add is 2 FLOPs; the patch embedding and the
  projector are not counted);
* language model: 32 layers x (8 n d^2 + 4 n^2 d + 6 n d m) with d = 4096, m = 11008 and n the
  visual tokens only (the text is ignored; SwiGLU has three d x m matrices);
* FastV: its first K = 2 layers at the full visual length, the other layers at the kept length;
* storage: the visual tokens' KV cache, 2 (K and V) x 32 layers x 4096 channels x 2 bytes = 0.5 MiB
  per token (the paper writes MB).

`exact` in `efficiency.flops` is the accounting of what our code runs; this module is the
paper's, for reproducing its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import tables
from .shapes import CLIP_L_336, VICUNA_7B
from .tables import Column

MIB = 2**20


def vision_flops(crops: int = 1, tower: dict = CLIP_L_336) -> float:
    d, m, layers = tower["hidden_size"], tower["intermediate_size"], tower["num_hidden_layers"]
    n = (tower["image_size"] // tower["patch_size"]) ** 2 + 1
    return crops * layers * (8 * n * d**2 + 4 * n**2 * d + 4 * n * d * m)


def layer_flops(n: int, decoder: dict = VICUNA_7B) -> float:
    """One decoder layer over n visual tokens."""
    d, m = decoder["hidden_size"], decoder["intermediate_size"]
    return 8 * n * d**2 + 4 * n**2 * d + 6 * n * d * m


def model_flops(visual_tokens: int, crops: int = 1, decoder: dict = VICUNA_7B) -> float:
    """Vision tower + every decoder layer at `visual_tokens`."""
    return vision_flops(crops) + decoder["num_hidden_layers"] * layer_flops(visual_tokens, decoder)


def fastv_flops(full_tokens: int, kept_tokens: int, crops: int = 1, layer: int = 2, decoder: dict = VICUNA_7B) -> float:
    """Vision tower + `layer` decoder layers at `full_tokens` + the rest at `kept_tokens`."""
    rest = decoder["num_hidden_layers"] - layer
    return vision_flops(crops) + layer * layer_flops(full_tokens, decoder) + rest * layer_flops(kept_tokens, decoder)


def storage_mib(visual_tokens: float, decoder: dict = VICUNA_7B, bytes_per_value: int = 2) -> float:
    """KV cache of `visual_tokens` tokens in every layer, in MiB."""
    return visual_tokens * 2 * decoder["num_hidden_layers"] * decoder["hidden_size"] * bytes_per_value / MIB


def fastv_storage_mib(full_tokens: int, kept_tokens: int, layer: int = 2, decoder: dict = VICUNA_7B) -> float:
    """FastV's KV cache: `layer` layers hold `full_tokens`, the others `kept_tokens`."""
    layers = decoder["num_hidden_layers"]
    return storage_mib((layer * full_tokens + (layers - layer) * kept_tokens) / layers, decoder)


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's efficiency table (LLaVA-NeXT-7B, one A100-80GB, POPE).

    `tokens` is the row's label; `v1_tokens` the FasterVLM v1 budget whose row carries the same
    FLOPs (the v2 table reuses v1's 720- and 145-token rows under the labels 640 and 160)."""

    method: str
    tokens: int
    v1_tokens: int
    flops_t: float
    storage_mb: float
    memory_gb: float
    cuda_ms: float


FULL_TOKENS = 2880
CROPS = 5
PAPER_TABLE = (
    PaperRow("none", 2880, 2880, 43.6, 1440, 17.0, 313),
    PaperRow("fastv", 640, 720, 13.5, 380, 16.9, 148),
    PaperRow("vispruner", 640, 720, 11.5, 360, 14.8, 117),
    PaperRow("fastv", 160, 145, 6.3, 95, 16.9, 112),
    PaperRow("vispruner", 160, 145, 3.8, 80, 14.7, 78),
)


def row_flops(method: str, tokens: int) -> float:
    if method == "fastv":
        return fastv_flops(FULL_TOKENS, tokens, CROPS)
    return model_flops(tokens, CROPS)


def row_storage(method: str, tokens: int) -> float:
    return fastv_storage_mib(FULL_TOKENS, tokens) if method == "fastv" else storage_mib(tokens)


def reproduce_table() -> list[dict]:
    """Each paper row beside this accounting at the row's label and at the v1 budget behind it."""
    rows = []
    for row in PAPER_TABLE:
        rows.append(
            {
                "method": row.method,
                "label_tokens": row.tokens,
                "v1_tokens": row.v1_tokens,
                "paper_flops_t": row.flops_t,
                "flops_t_at_label": row_flops(row.method, row.tokens) / 1e12,
                "flops_t_at_v1_tokens": row_flops(row.method, row.v1_tokens) / 1e12,
                "paper_storage_mb": row.storage_mb,
                "storage_mib_at_label": row_storage(row.method, row.tokens),
                "storage_mib_at_v1_tokens": row_storage(row.method, row.v1_tokens),
            }
        )
    return rows


def llava15_reductions(budgets=(128, 64, 32)) -> list[dict]:
    """FLOPs reduction of LLaVA-1.5-7B (576 tokens, one crop) at each budget, with and without the tower."""
    full = model_flops(576)
    full_llm = full - vision_flops()
    rows = []
    for tokens in budgets:
        pruned = model_flops(tokens)
        rows.append(
            {
                "tokens": tokens,
                "flops_t": pruned / 1e12,
                "reduction": 1 - pruned / full,
                "reduction_language_model": 1 - (pruned - vision_flops()) / full_llm,
            }
        )
    return rows


TERA = 1e12
PAPER_COLUMNS = (
    Column("method", "method"),
    Column("label", "label_tokens"),
    Column("v1 budget", "v1_tokens"),
    Column("FLOPs paper (T)", "paper_flops_t", ".1f"),
    Column("ours at v1 budget", "flops_t_at_v1_tokens", ".2f"),
    Column("ours at label", "flops_t_at_label", ".2f"),
    Column("storage paper (MB)", "paper_storage_mb", "g"),
    Column("ours at v1 budget (MiB)", "storage_mib_at_v1_tokens", ".1f"),
    Column("ours at label (MiB)", "storage_mib_at_label", ".1f"),
)
LLAVA15_COLUMNS = (
    Column("tokens", "tokens"),
    Column("FLOPs (T)", "flops_t", ".2f"),
    Column("reduction", "reduction", ".1%"),
    Column("reduction, language model only", "reduction_language_model", ".1%"),
)


def markdown() -> str:
    unpruned = {"tokens": 576, "flops_t": model_flops(576) / TERA, "reduction": None, "reduction_language_model": None}
    return "\n".join(
        [
            "LLaVA-NeXT-7B efficiency table (paper) vs the reconstructed accounting",
            "",
            tables.markdown(reproduce_table(), PAPER_COLUMNS),
            "",
            "LLaVA-1.5-7B (576 tokens, 1 crop), same accounting",
            "",
            tables.markdown([unpruned, *llava15_reductions()], LLAVA15_COLUMNS),
        ]
    )
