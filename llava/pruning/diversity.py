"""VisPruner's diverse step: iterative bipartite matching that drops near-duplicates from a token pool.

Each round splits the pool (in its current order) into even and odd positions, gives every even
token its best cosine match among the odd ones, drops the `ROUND_SIZE` even tokens with the highest
best match and re-orders the pool as the surviving even tokens (by descending best match, stable)
followed by the odd ones, until `keep` tokens remain. Every round reads one number per even token:
the maximum of its similarity row over the current odd side. Three exact ways to get it (the kept
set is the same by every one, in every precision, because only the maximum value enters the ranking):

* `_rounds_by_gather` (R <= `NEIGHBOUR_POOL`): read the odd tokens' rows of a transposed copy and take
  column maxima. About R/8 rounds of (R/2) x R reads: cheap per round, but N^3 in total.
* `_rounds_by_neighbours` (larger pools, on the CPU): every token's `WINDOW` most similar pool tokens,
  sorted once (descending); a round's row maximum is the first window entry currently on the odd
  side. About half the pool is on each side, so the first few neighbours usually hold one; a row
  whose window holds none (all its neighbours even or dropped) falls back to its exact row maximum.
  The windows are rebuilt on the surviving tokens each time the pool is down to `REBUILD_SHARE` of
  their last build, so dropped tokens do not crowd them out. Cost: the similarity matmul (R^2 C),
  the windows' top-k (R^2), and R/8 rounds of R/2 x WINDOW reads. On a GPU the gather route stays:
  its block reads are parallel and cheap there, and the windows' exact fallback would have to ask
  the device each round whether a row needs it (a host sync).
* `fused=True` (VisPruner's `compile=True`): the gather route without a dispatch or a launch per
  step. On the CPU, pools up to `FUSED_POOL` run in one C++ loop (`fused_rounds.py`, `rounds.cpp`);
  larger pools keep the neighbour windows, which grow as R^2 where the loop grows as R^3. Elsewhere
  the gather route's rounds go through `torch.compile` (`COMPILE_BACKEND`): on CUDA they are the
  same kernels replayed as one CUDA graph. Only the rounds are compiled, never the similarity: they
  compare and move numbers without arithmetic, so a compiler cannot round them differently.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from . import fused_rounds

ROUND_SIZE = 8  # even-side tokens dropped per matching round, as in the published code
NEIGHBOUR_POOL = 2048  # larger pools use neighbour windows (the measured crossover: docs/efficiency.md)
FUSED_POOL = 3072  # the C++ loop's largest pool (above, the windows are faster: docs/efficiency.md)
WINDOW = 16  # neighbours kept per token between rebuilds
REBUILD_SHARE = 0.6  # rebuild the windows once the pool is down to this share of their last build
WINDOW_CHUNK = 1 << 20  # similarities read per step while rebuilding the windows

# torch.compile backend of the fused rounds off the CPU; "cudagraphs" captures the plain rounds' own
# kernels as one graph (no code generation to wait for, and the very kernels `select` runs)
COMPILE_BACKEND = {"cuda": "cudagraphs"}
DEFAULT_COMPILE_BACKEND = "inductor"

EVEN, ODD, DROPPED = 0, 1, 2


def diverse_positions(
    similarity: torch.Tensor, keep: int, neighbour_pool: int = NEIGHBOUR_POOL, fused: bool = False
) -> torch.Tensor:
    """Positions [B, keep] into the pool that survive the rounds, in the pool's final order.

    similarity: [B, R, R] cosine similarities of the pool's tokens, in pool (priority) order.
    neighbour_pool: pools larger than this use neighbour windows (a test lowers it to compare both).
    fused: on the CPU, pools up to `FUSED_POOL` run in the C++ loop (built on first use); elsewhere
    the rounds are compiled (once per device kind, pool size and `keep`)."""
    pool_size = similarity.shape[1]
    on_cpu = similarity.device.type == "cpu"
    if fused and on_cpu and pool_size <= FUSED_POOL:
        return fused_rounds.diverse_rounds(similarity, keep, ROUND_SIZE)
    if fused and not on_cpu:
        return compiled_rounds(similarity.device.type)(similarity, keep)
    if on_cpu and pool_size > neighbour_pool:
        return _rounds_by_neighbours(similarity, keep)
    return _rounds_by_gather(similarity, keep)


_COMPILED: dict[str, Callable] = {}


def compiled_rounds(device_kind: str, backend: str | None = None) -> Callable:
    """The gather route's rounds through `torch.compile`, one per device kind (and backend: a test
    traces them on the CPU with "aot_eager", the graph "cudagraphs" captures on CUDA)."""
    backend = backend or COMPILE_BACKEND.get(device_kind, DEFAULT_COMPILE_BACKEND)
    key = f"{device_kind}/{backend}"
    if key not in _COMPILED:
        _COMPILED[key] = partial(_replay, torch.compile(_rounds_by_gather, backend=backend, dynamic=False))
    return _COMPILED[key]


def _replay(compiled: Callable, similarity: torch.Tensor, keep: int) -> torch.Tensor:
    """One call of the compiled rounds: always in inference mode (a CUDA graph recorded in one autograd
    mode refuses inputs from another), each call a new step of the graph (older torch releases do not
    start one by themselves), and a copy of the result (a graph overwrites its outputs when replayed)."""
    with torch.inference_mode():
        torch.compiler.cudagraph_mark_step_begin()
        positions = compiled(similarity, keep)
    return positions.clone()


def _one_round(position: torch.Tensor, best_match: torch.Tensor, drop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the new order, the dropped positions) after dropping the `drop` evens with the highest best match."""
    even, odd = position[:, 0::2], position[:, 1::2]
    by_redundancy = torch.argsort(best_match, dim=-1, descending=True, stable=True)
    return torch.cat([even.gather(1, by_redundancy[:, drop:]), odd], dim=1), even.gather(1, by_redundancy[:, :drop])


def _drops(pool_size: int, keep: int):
    """(remaining before the round, tokens dropped) of every round: fixed by the sizes alone, so the
    loop never waits for the device."""
    remaining = pool_size
    while (drop := min(ROUND_SIZE, remaining - keep)) > 0:
        drop = min(drop, (remaining + 1) // 2)  # never more than stand on the even side
        yield remaining, drop
        remaining -= drop


def _start(similarity: torch.Tensor) -> torch.Tensor:
    """Every pool position in priority order, [B, R]: the order before the first round."""
    batch, pool_size, _ = similarity.shape
    return torch.arange(pool_size, device=similarity.device).expand(batch, pool_size)


def _rounds_by_gather(similarity: torch.Tensor, keep: int) -> torch.Tensor:
    position = _start(similarity)
    pool_size = similarity.shape[1]
    if similarity.shape[0] == 1:  # one image: 1-D indices, the fewest operators per round
        # Row j of the transposed copy holds column j: a round reads the odd tokens' rows once (a third
        # less than gathering the even x odd block) and takes each column's maximum, the same numbers.
        by_column, order = similarity[0].T.contiguous(), position[0]
        for _, drop in _drops(pool_size, keep):
            even, odd = order[0::2], order[1::2]
            best_match = by_column.index_select(0, odd).amax(dim=0).index_select(0, even)
            by_redundancy = torch.argsort(best_match, descending=True, stable=True)
            order = torch.cat([even.index_select(0, by_redundancy[drop:]), odd])
        return order[None]
    for _, drop in _drops(pool_size, keep):
        best_match = _block(similarity, position[:, 0::2], position[:, 1::2]).amax(dim=-1)
        position, _ = _one_round(position, best_match, drop)
    return position


def _block(similarity: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """similarity[b, rows[b]][:, columns[b]] for every b: [B, len(rows), len(columns)], a copy."""
    batch, pool_size, _ = similarity.shape
    if batch == 1:  # two 1-D index_selects: the cheapest way to read a block
        return similarity[0].index_select(0, rows[0]).index_select(1, columns[0])[None]
    offset = torch.arange(batch, device=similarity.device)[:, None] * pool_size
    flat = similarity.reshape(batch * pool_size, pool_size).index_select(0, (rows + offset).flatten())
    return flat.view(batch, -1, pool_size).gather(2, columns[:, None, :].expand(-1, rows.shape[1], -1))


def _rounds_by_neighbours(similarity: torch.Tensor, keep: int) -> torch.Tensor:
    batch, pool_size, _ = similarity.shape
    position = _start(similarity)
    side = torch.full((batch, pool_size), DROPPED, dtype=torch.int8, device=similarity.device)
    neighbours, values = _windows(similarity, position)
    built_at = pool_size
    for remaining, drop in _drops(pool_size, keep):
        if remaining <= REBUILD_SHARE * built_at:
            neighbours, values = _windows(similarity, position)
            built_at = remaining
        even, odd = position[:, 0::2], position[:, 1::2]
        side.scatter_(1, even, EVEN)
        side.scatter_(1, odd, ODD)
        rows = even[..., None].expand(-1, -1, neighbours.shape[-1])
        window = neighbours.gather(1, rows)  # [B, E, W] pool indices, most similar first
        off_odd = side.gather(1, window.flatten(1)).view_as(window) != ODD
        # the windows are sorted, so the largest value on the odd side is the first odd neighbour's
        best_match = values.gather(1, rows).masked_fill_(off_odd, float("-inf")).amax(dim=-1)
        missing = off_odd.all(dim=-1)
        if bool(missing.any()):  # exact row maxima where the window held no odd token
            best_match = _fill_missing(similarity, even, odd, best_match, missing)
        position, dropped = _one_round(position, best_match, drop)
        side.scatter_(1, dropped, DROPPED)
    return position


def _windows(similarity: torch.Tensor, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each surviving token's `WINDOW` most similar surviving tokens (itself included: it is never on
    the odd side in its own row's round), by descending similarity: (pool indices [B, R, W],
    similarities [B, R, W]); rows of dropped tokens are unused. Reads whole rows (a column gather would
    cost more than the masked top-k), a few MiB at a time."""
    batch, pool_size, _ = similarity.shape
    alive = position.shape[1]
    width = min(WINDOW, alive)
    if alive == pool_size:  # nothing dropped yet: the rows as they are
        values, neighbours = similarity.topk(width, dim=-1, sorted=True)
        return neighbours, values
    dropped = torch.ones(batch, pool_size, dtype=torch.bool, device=similarity.device).scatter_(1, position, False)
    neighbours = torch.zeros(batch, pool_size, width, dtype=torch.long, device=similarity.device)
    values = torch.zeros(batch, pool_size, width, dtype=similarity.dtype, device=similarity.device)
    step = max(1, WINDOW_CHUNK // pool_size)
    for b in range(batch):
        for start in range(0, alive, step):
            tokens = position[b, start : start + step]
            rows = similarity[b].index_select(0, tokens).masked_fill_(dropped[b], float("-inf"))
            top_values, top_index = rows.topk(width, dim=-1, sorted=True)
            neighbours[b].index_copy_(0, tokens, top_index)
            values[b].index_copy_(0, tokens, top_values)
    return neighbours, values


def _fill_missing(similarity, even, odd, best_match, missing):
    """`best_match` with the exact maxima over the odd side for the (batch, even) pairs in `missing`."""
    batch_index, row = missing.nonzero(as_tuple=True)
    pool_size = similarity.shape[1]
    tokens = even.reshape(-1).index_select(0, batch_index * even.shape[1] + row)
    rows = similarity.reshape(-1, pool_size).index_select(0, batch_index * pool_size + tokens)  # [M, R]
    exact = rows.gather(1, odd.index_select(0, batch_index)).amax(dim=-1)
    return best_match.index_put((batch_index, row), exact)
