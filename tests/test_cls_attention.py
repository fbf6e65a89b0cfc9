import pytest
import torch

from llava.models import clip


@pytest.mark.parametrize("layer", [-2, -1, 1, 2])
def test_cls_row_matches_eager_attention_while_sdpa_stays_on(tiny, images, layer):
    model, processor = tiny
    tower = model.model.vision_tower
    pixels = processor.image_processor(images, return_tensors="pt").pixel_values
    assert tower.config._attn_implementation == "sdpa"
    with torch.no_grad():
        ours = clip.encode(tower, pixels, layer, signals={"cls_attention"})
        assert tower.config._attn_implementation == "sdpa"
        stock = tower(pixels, output_hidden_states=True)
        tower.set_attn_implementation("eager")
        try:
            eager = tower(pixels, output_attentions=True).attentions
        finally:
            tower.set_attn_implementation("sdpa")
    producing_layer = clip.feature_depth(tower, layer) - 1  # hidden_states[k] is the output of layer k - 1
    assert (ours.cls_attention - eager[producing_layer][:, :, 0, 1:]).abs().max() < 1e-5
    assert torch.allclose(ours.features, stock.hidden_states[layer][:, 1:], atol=1e-5)
    assert ours.grid == (8, 8)


def test_layers_after_the_feature_layer_do_not_run(tiny, images):
    model, processor = tiny
    tower = model.model.vision_tower
    pixels = processor.image_processor(images[:1], return_tensors="pt").pixel_values
    ran = []
    handles = [
        layer.register_forward_hook(lambda m, i, o, k=k: ran.append(k)) for k, layer in enumerate(tower.encoder.layers)
    ]
    try:
        with torch.no_grad():
            clip.encode(tower, pixels, -2, signals={"cls_attention"})
    finally:
        for h in handles:
            h.remove()
    assert ran == [0, 1, 2]  # 4 layers; hidden_states[-2] is the output of the third


@pytest.mark.parametrize("layer", [0, 5, -5, [-2, -1]])
def test_feature_layer_without_an_encoder_layer_is_rejected(tiny, images, layer):
    model, processor = tiny
    pixels = processor.image_processor(images[:1], return_tensors="pt").pixel_values
    with pytest.raises(ValueError, match="vision_feature_layer"):
        clip.encode(model.model.vision_tower, pixels, layer, signals={"cls_attention"})
