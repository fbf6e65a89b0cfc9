import json

from PIL import Image

from efficiency import selection
from support import load_example

demo = load_example("demo")


def test_demo_prints_counts_and_saves_the_picture(tmp_path, capsys):
    out = tmp_path / "demo.png"
    demo.main(["--tokens", "32", "--ratio", "0.5", "--max-new-tokens", "2", "--output", str(out)])
    printed = capsys.readouterr().out
    assert "kept 32/576 visual tokens (16 important + 16 diverse)" in printed
    picture = Image.open(out)
    assert picture.width > 2 * 336 and picture.height > 336


def test_selection_benchmark_smoke(tmp_path):
    out = tmp_path / "bench.json"
    selection.main(["--shape", "tiny", "--tokens", "16", "8", "--repeats", "1", "--warmup", "0", "--output", str(out)])
    report = json.loads(out.read_text())
    row = report["results"][0]
    assert report["shape"]["N"] == 64 and set(row) >= {"tower_all_layers_ms", "select_T16_ms", "select_T8_ms"}
    assert all(v > 0 for k, v in row.items() if k.endswith("_ms"))
