"""Scenette-LLaVA's training objectives: the vision pretraining targets and the projector read-out."""

import torch
from transformers import CLIPVisionModel

from scenette.align import attribute_targets
from scenette.glyphs import GLYPHS
from scenette.model import Sizes, vision_config
from scenette.scene import COLOURS, SHAPES
from scenette.vision_training import NO_SHAPE, PretrainHeads, batch, patch_places


def test_patch_places_are_column_then_row_in_raster_order():
    assert patch_places(4).tolist() == [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]


def test_pretraining_scores_every_target_and_reaches_the_tower():
    torch.manual_seed(0)
    sizes = Sizes()
    tower = CLIPVisionModel(vision_config(sizes))
    heads = PretrainHeads(sizes.vision_hidden)
    pixels, targets = batch([3, 4], signs=4)
    pair_objects = targets["patch_shape"] != NO_SHAPE
    assert pair_objects.any() and (targets["patch_colour"][pair_objects] < len(COLOURS)).all()
    out = tower(pixel_values=pixels, output_hidden_states=True)
    loss, metrics = heads.losses(out.pooler_output, out.hidden_states[-2][:, 1:], targets)
    assert torch.isfinite(loss)
    assert {"patch_pair_acc", "patch_colour_acc", "patch_glyph_acc", "content_place_err"} <= metrics.keys()
    loss.backward()
    assert tower.get_input_embeddings().weight.grad.abs().sum() > 0  # the patch embedding learns from it


def test_projector_read_out_has_a_unit_per_label_and_the_patch_place():
    _, targets = batch([5], signs=1)
    y = attribute_targets(targets, 24)
    assert y.shape == (576, 3 + len(COLOURS) + len(SHAPES) + len(COLOURS) * len(SHAPES) + len(GLYPHS) + 1 + 4)
    pairs = y[:, 3 + len(COLOURS) + len(SHAPES) : 3 + len(COLOURS) + len(SHAPES) + len(COLOURS) * len(SHAPES)]
    on_object = (targets["patch_shape"] != NO_SHAPE).reshape(-1)
    assert ((pairs > 0).sum(1) == on_object.long()).all()  # one pair unit on per object patch, none elsewhere
    assert torch.equal(y[:, -4:-2], patch_places(576))
    assert torch.equal(y[:, -2:], -patch_places(576))  # mirrored, so the GELU keeps both halves of the image
