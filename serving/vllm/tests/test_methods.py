"""Other vision-side methods of llava.pruning through the same path: the placeholder count is the method's
own kept count, and generation runs."""

from __future__ import annotations

import pytest
from llava_case import GREEDY, engine, request, shapes

from llava.pruning import create_pruner

GRID = (8, 8)  # test_llava's tiny model: 112 px, 14 px patches
METHODS = {
    "fastervlm": {"visual_token_num": 6},
    "divprune": {"visual_token_num": 6},
    "visionzip": {"visual_token_num": 6},
    "pool": {"visual_token_num": 16},
    "random": {"visual_token_num": 6},
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_runs_with_its_own_count(checkpoint, method):
    _, processor, folder = checkpoint
    settings = {"method": method, **METHODS[method]}
    llm = engine(folder, settings)
    (output,) = llm.generate([request([shapes(0)])], GREEDY)
    kept = create_pruner(method, **METHODS[method]).kept_per_image(GRID[0] * GRID[1], GRID)
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert output.prompt_token_ids.count(image_token) == kept
    assert output.outputs[0].token_ids
