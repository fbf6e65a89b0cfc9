import json

import pytest
import torch
from PIL import Image

from efficiency import selection
from support import load_example

demo = load_example("demo")


@pytest.mark.slow
def test_demo_prints_counts_and_saves_the_picture(tmp_path, capsys, monkeypatch):
    """The picture shows the tokens of the one generate call behind the printed answer (one tower pass in
    all: none is repeated for the picture), split as [CLS] attention and `select` split them."""
    import scenette
    from llava import visualize
    from llava.models import clip
    from llava.pruning.vispruner import attention_order, select

    encode, draw, encoded, drawn = clip.encode, visualize.draw_kept_patches, [], []

    def counted_encode(tower, pixels, *args, **kwargs):
        encoded.append(pixels)
        return encode(tower, pixels, *args, **kwargs)

    def recorded_draw(image, grid, first, second, **kwargs):
        drawn.append((grid, first, second))
        return draw(image, grid, first, second, **kwargs)

    monkeypatch.setattr(clip, "encode", counted_encode)
    monkeypatch.setattr(visualize, "draw_kept_patches", recorded_draw)
    out = tmp_path / "demo.png"
    demo.main(["--tokens", "32", "--ratio", "0.5", "--max-new-tokens", "2", "--output", str(out)])
    printed = capsys.readouterr().out
    assert "kept 32/576 visual tokens (16 important + 16 diverse)" in printed
    picture = Image.open(out)
    assert picture.width > 2 * 336 and picture.height > 336
    assert len(encoded) == 1 and len(drawn) == 1
    model, _ = scenette.load_default()
    with torch.no_grad():
        layer = model.config.vision_feature_layer
        vision = encode(model.model.vision_tower, encoded[0], layer, signals={"cls_attention"})
    kept = select(vision.features, vision.cls_attention, 32, 0.5)[0].tolist()
    important = sorted(attention_order(vision.cls_attention)[0, :16].tolist())
    assert drawn[0] == ((24, 24), important, sorted(set(kept) - set(important)))


@pytest.mark.slow
def test_selection_benchmark_writes_medians_and_the_ratios_of_those_medians(tmp_path):
    """The command's plumbing: the timings themselves are measurements (nothing to assert about their
    size on a shared machine), but how they are reported is checkable."""
    out = tmp_path / "bench.json"
    selection.main(["--shape", "tiny", "--tokens", "16", "8", "--repeats", "1", "--warmup", "0", "--output", str(out)])
    report = json.loads(out.read_text())
    shape, row = report["shape"], report["results"][0]
    assert shape["N"] == (shape["image_size"] // shape["patch_size"]) ** 2 == 64
    assert report["hardware"] and report["timing"]["min_runs"] == 1
    for name, timing in row["timings"].items():
        assert timing["q1_ms"] <= timing["median_ms"] <= timing["q3_ms"] and timing["runs"] >= 1
        assert row[f"{name}_ms"] == timing["median_ms"]
    for tokens in ("16", "8"):
        assert row["select_share_of_tower"][tokens] == pytest.approx(
            row[f"select_T{tokens}_ms"] / row["tower_all_layers_ms"]
        )
