"""Issue 20: load_pretrained_model refuses bad folders, ids and options before reading weights, and the
demo (examples/demo.py) refuses bad arguments and files before loading a model."""

from __future__ import annotations

import json
import re

import pytest
import transformers

import llava
from bad_inputs import CLASSES
from family_helpers import random_image
from support import load_example

# ======================================================================================================
# load_pretrained_model
# ======================================================================================================


def config_folder(config):
    """A folder holding only a config.json (`config` as JSON, or the text as it is): no weights to read."""

    def make(tmp_path):
        folder = tmp_path / "checkpoint"
        folder.mkdir()
        text = config if isinstance(config, str) else json.dumps(config)
        (folder / "config.json").write_text(text)
        return str(folder)

    return make


ALLOWED = f"supported: {CLASSES}"
LOAD_CASES = [
    (
        "an architecture outside the families",
        config_folder({"architectures": ["BertModel"], "model_type": "bert"}),
        {},
        "names architecture 'BertModel', which this loader does not load; " + ALLOWED,
    ),
    (
        "a transformers attribute that is no model",
        config_folder({"architectures": ["pipeline"], "model_type": "llava"}),
        {},
        "names architecture 'pipeline', which this loader does not load",
    ),
    (
        "a module of transformers",
        config_folder({"architectures": ["utils"], "model_type": "llava"}),
        {},
        "names architecture 'utils', which this loader does not load",
    ),
    (
        "architectures not a list",
        config_folder({"architectures": "LlavaForConditionalGeneration", "model_type": "llava"}),
        {},
        "config.json 'architectures' must be a list of class names, got 'LlavaForConditionalGeneration'",
    ),
    (
        "no architectures, another model_type",
        config_folder({"model_type": "bert"}),
        {},
        "has no 'architectures' and model_type 'bert' is not a supported one; supported model types: ",
    ),
    (
        "no architectures, no model_type",
        config_folder({}),
        {},
        "has no 'architectures' and model_type None is not a supported one",
    ),
    ("config.json not JSON", config_folder("{not json"), {}, "config.json is not a valid JSON file"),
    ("config.json a list", config_folder("[1, 2]"), {}, "config.json must hold a JSON object, got list"),
    (
        "vision_tower for a transformers-format checkpoint",
        config_folder({"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava"}),
        {"vision_tower": "openai/clip"},
        "vision_tower only applies to original LLaVA checkpoints",
    ),
    ("path None", lambda tmp_path: None, {}, "path_or_id must be a local folder or a Hub model id, got None"),
    ("path empty", lambda tmp_path: "", {}, "path_or_id must be a local folder or a Hub model id, got ''"),
]


@pytest.mark.parametrize("case, make, kwargs, fragment", LOAD_CASES, ids=[c[0] for c in LOAD_CASES])
def test_load_pretrained_model_refuses_before_reading_weights(case, make, kwargs, fragment, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("weights were read")

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(no_loading))
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", no_loading)
    path = make(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=re.escape(fragment)):
        llava.load_pretrained_model(path, local_files_only=True, **kwargs)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# ======================================================================================================
# the demo (examples/demo.py)
# ======================================================================================================

demo = load_example("demo")


def truncated_png(tmp_path, name="photo.png"):
    """A PNG file cut in the middle of its image data."""
    path = tmp_path / name
    random_image(64, 64, 1).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def text_file(tmp_path, name, text="not an image"):
    path = tmp_path / name
    path.write_text(text)
    return path


DEMO_CASES = [
    ("image missing", lambda t: ["--image", str(t / "nope.png")], "--image {t}/nope.png: no such file"),
    ("image a folder", lambda t: ["--image", str(t)], "--image {t}: a folder, not an image file"),
    (
        "image truncated",
        lambda t: ["--image", str(truncated_png(t))],
        "--image {t}/photo.png: not a readable image (image file is truncated",
    ),
    (
        "image not an image",
        lambda t: ["--image", str(text_file(t, "x.png"))],
        "--image {t}/x.png: not a readable image (cannot identify image file",
    ),
    ("image empty", lambda t: ["--image", str(text_file(t, "e.jpg", ""))], "--image {t}/e.jpg: not a readable image"),
    (
        "device unknown",
        lambda t: ["--device", "gpu"],
        "--device gpu: not a device torch knows; allowed: cpu, cuda, cuda:N, mps",
    ),
    ("device empty", lambda t: ["--device", ""], "--device : not a device torch knows"),
    ("device another backend", lambda t: ["--device", "meta"], "--device meta: the demo does not run on meta"),
    ("device past the GPUs", lambda t: ["--device", "cuda:99"], "--device cuda:99: "),
    (
        "model a missing folder",
        lambda t: ["--model", "./no/such/folder"],
        "--model ./no/such/folder: no such folder (nor a Hub id",
    ),
    ("model a file", lambda t: ["--model", str(text_file(t, "model.bin"))], "--model {t}/model.bin: not a folder"),
    ("model a folder without config.json", lambda t: ["--model", str(t)], "--model {t}: no config.json in this folder"),
    ("model config.json not JSON", lambda t: ["--model", config_folder("{")(t)], "config.json is not valid JSON"),
    (
        "model an unsupported architecture",
        lambda t: ["--model", config_folder({"architectures": ["BertModel"]})(t)],
        "names architecture 'BertModel', which this loader does not load",
    ),
    ("model empty", lambda t: ["--model", ""], "--model : empty"),
    ("max-new-tokens 0", lambda t: ["--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),
    (
        "tokens 0",
        lambda t: ["--tokens", "0"],
        "--tokens/--ratio: visual_token_num must be a positive integer (>= 1), got 0",
    ),
    ("tokens not a number", lambda t: ["--tokens", "many"], "argument --tokens: invalid int value: 'many'"),
    (
        "ratio NaN",
        lambda t: ["--ratio", "nan"],
        "--tokens/--ratio: important_ratio must be a number in [0, 1], got nan",
    ),
    ("ratio above 1", lambda t: ["--ratio", "1.5"], "--tokens/--ratio: important_ratio must be in [0, 1], got 1.5"),
    ("question empty", lambda t: ["--question", " "], "--question: empty"),
    ("output an unknown format", lambda t: ["--output", str(t / "out.xyz")], "unknown picture format '.xyz'"),
    ("output a folder", lambda t: ["--output", str(t)], "--output {t}: is a folder"),
    (
        "output under a file",
        lambda t: ["--output", str(text_file(t, "f.txt") / "out.png")],
        "f.txt is a file, not a folder",
    ),
]


@pytest.mark.parametrize("case, argv, fragment", DEMO_CASES, ids=[c[0] for c in DEMO_CASES])
def test_demo_refuses_bad_arguments_before_loading_a_model(case, argv, fragment, tmp_path, monkeypatch, capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.chdir(tmp_path)  # the default --output lies here: nothing may appear
    monkeypatch.setattr(demo, "load", no_loading)
    arguments = argv(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_:
        demo.main(arguments)
    assert exit_.value.code == 2
    assert fragment.format(t=tmp_path) in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before


def test_demo_names_a_model_that_fails_to_load(monkeypatch):
    def offline(path, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(llava, "load_pretrained_model", offline, raising=False)
    with pytest.raises(SystemExit, match=re.escape("demo: --model owner/missing: cannot load it: We couldn't connect")):
        demo.load("owner/missing")
