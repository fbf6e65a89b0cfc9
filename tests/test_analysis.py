"""The analysis library (`analysis/`): attention signals, measures, kept-token pruning, the study cache, the CLI."""

import json

import numpy as np
import pytest
import torch

import llava
from analysis import measures
from analysis.accuracy import KeepVisualTokens
from analysis.attention import batch_signals, equal_visual_positions, prompt_positions, visual_positions
from analysis.data import Dataset, drawn_samples, exact_match
from analysis.study import Settings, Study, open_study
from analysis.subjects import load_model
from llava.models import clip

QUESTIONS = [
    "Is there a red square? Answer with one word.",
    "What is shown?",
    "Is there a blue square in the picture here?",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run far faster on one thread than on two busy ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def subject():
    return load_model("smoke")


@pytest.fixture(scope="module")
def batch(subject):
    samples = [
        s.__class__(s.id, q, s.answer, s.image_source) for s, q in zip(drawn_samples(3, size=112).samples, QUESTIONS)
    ]
    return samples, subject.encode(samples)


def eager_rows(model, inputs, positions):
    """Head-mean attention maps of every language-model layer, from eager attention."""
    lm = model.model.language_model
    lm.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            maps = model(**inputs, position_ids=positions, output_attentions=True).attentions
    finally:
        lm.set_attn_implementation("sdpa")
    return torch.stack([m.mean(1) for m in maps], dim=1)  # [B, layers, L, L]


def test_signals_match_eager_attention_while_sdpa_stays_on(subject, batch):
    samples, inputs = batch
    model = subject.model
    assert (inputs["attention_mask"] == 0).any()  # a left-padded batch
    signals = batch_signals(model, inputs, [s.id for s in samples])
    visual = visual_positions(model, inputs["input_ids"])
    positions = prompt_positions(inputs["attention_mask"].bool())
    rows = eager_rows(model, inputs, positions)
    columns = visual[:, None, None, :].expand(-1, rows.shape[1], rows.shape[2], -1)
    to_visual = rows.gather(3, columns)  # [B, layers, L, N]
    assert np.allclose(signals.last, to_visual[:, :, -1].numpy(), atol=1e-6)
    for b in range(len(samples)):
        question = to_visual[b, :, visual[b, -1] + 1 :].mean(1)
        assert np.allclose(signals.question[b], question.numpy(), atol=1e-6)
    equal = eager_rows(model, inputs, equal_visual_positions(positions, visual)).gather(3, columns)[:, :, -1]
    assert np.allclose(signals.equal, equal.numpy(), atol=1e-6)
    assert not np.allclose(signals.equal, signals.last, atol=1e-4)  # the positions did change the rows
    with torch.no_grad():
        vision = clip.encode(
            model.model.vision_tower,
            inputs["pixel_values"],
            model.config.vision_feature_layer,
            signals={"cls_attention"},
        )
    assert np.allclose(signals.cls, vision.cls_attention.mean(1).numpy(), atol=1e-6)
    assert model.config.text_config._attn_implementation == "sdpa"
    assert signals.last.shape == (3, 4, 64) and signals.cls.shape == (3, 64) and signals.grid == (8, 8)


def test_a_prompt_alone_gives_the_same_signals_as_in_a_padded_batch(subject, batch):
    samples, inputs = batch
    together = batch_signals(subject.model, inputs, [s.id for s in samples])
    alone = batch_signals(subject.model, subject.encode(samples[1:2]), [samples[1].id])
    for name in ("last", "question", "equal", "cls"):
        assert np.allclose(getattr(alone, name)[0], getattr(together, name)[1], atol=1e-5), name


def test_equal_positions_put_every_visual_token_at_the_last_ones():
    positions = torch.arange(8)[None]
    visual = torch.tensor([[2, 3, 4]])
    assert equal_visual_positions(positions, visual).tolist() == [[0, 1, 4, 4, 4, 5, 6, 7]]


def test_measures_have_the_documented_shapes_and_sums():
    rng = np.random.default_rng(0)
    scores = rng.random((5, 3, 10)).astype(np.float32)
    frequency = measures.selection_frequency(scores[:, 0], 4)
    assert frequency.shape == (10,) and frequency.max() == 1.0 and (frequency >= 0).all()
    shares = measures.quartile_shares(scores)
    assert shares.shape == (3, 4) and np.allclose(shares.sum(-1), 100.0)
    assert np.allclose(measures.quartile_shares(scores, weight="mass").sum(-1), 100.0)
    assert [b - a for a, b in measures.quartile_bounds(10)] == [2, 3, 2, 3]
    curve = measures.cumulative_distribution(scores[:, 0])
    assert curve.shape == (10,) and np.isclose(curve[-1], 1.0) and (np.diff(curve) >= 0).all()
    probabilities, edges = measures.density(scores[:, 0])
    assert probabilities.shape == (200,) and edges.shape == (201,) and np.isclose(probabilities.sum(), 1.0)
    assert 0 < measures.normalized_entropy(scores[:, 0]) <= 1
    assert np.isclose(measures.normalized_entropy(np.ones((2, 10))), 1.0)


def test_measures_on_known_cases():
    late = np.tile(np.arange(16, dtype=float), (3, 1))  # attention grows with the index
    assert measures.quartile_shares(late).tolist() == [0.0, 0.0, 0.0, 100.0]
    assert measures.selection_frequency(late, 2).tolist() == [0.0] * 14 + [1.0, 1.0]
    assert measures.top_tokens(np.array([1.0, 3.0, 3.0, 2.0]), 2).tolist() == [1, 2]  # ties to the earlier token
    peaked = np.zeros((1, 10))
    peaked[0, 3] = 1.0
    assert np.isclose(measures.cumulative_distribution(peaked)[0], 1.0) and measures.normalized_entropy(peaked) == 0.0
    with pytest.raises(ValueError, match="weight"):
        measures.quartile_shares(late, weight="sum")


def test_keeping_tokens_before_the_first_layer_equals_masking_the_others_out(subject, batch):
    """Dropping visual tokens before layer 0 with their positions kept is the same as hiding them
    from every layer with the attention mask."""
    _, inputs = batch
    model = subject.model
    keep = torch.tensor([[0, 5, 9, 40, 63], [1, 2, 3, 4, 5], [60, 61, 62, 63, 10]])
    positions = prompt_positions(inputs["attention_mask"].bool())
    visual = visual_positions(model, inputs["input_ids"])
    hidden = inputs["attention_mask"].clone()
    dropped = torch.ones_like(visual, dtype=torch.bool).scatter(1, keep, False)
    hidden.scatter_(1, visual, (~dropped).long())
    with torch.no_grad():
        expected = model(**{**inputs, "attention_mask": hidden}, position_ids=positions).logits[:, -1]
        llava.models.attach_pruner(model, KeepVisualTokens(keep, layer=0))
        try:
            got = model(**inputs).logits[:, -1]
        finally:
            llava.remove_pruning(model)
    assert torch.allclose(got, expected, atol=1e-5)


def test_keeping_tokens_from_a_later_layer_shortens_only_the_later_layers(subject, batch):
    _, inputs = batch
    model = subject.model
    lengths = {}
    handles = [
        layer.register_forward_pre_hook(
            lambda m, args, k=k: None if k in lengths else lengths.update({k: args[0].shape[1]})
        )
        for k, layer in enumerate(model.model.language_model.layers)
    ]
    llava.models.attach_pruner(model, KeepVisualTokens(torch.arange(16)[None], layer=2))
    try:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    finally:
        llava.remove_pruning(model)
        for handle in handles:
            handle.remove()
    length = inputs["input_ids"].shape[1]
    assert [lengths[k] for k in range(4)] == [length, length, length - 48, length - 48]
    assert out.shape == (3, length + 3)
    with pytest.raises(ValueError, match="layer 4"):
        llava.models.attach_pruner(model, KeepVisualTokens(torch.arange(16)[None], layer=4))


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    return tmp_path_factory.mktemp("analysis-results")


@pytest.fixture(scope="module")
def study(smoke_results):
    return open_study(smoke=True, results=smoke_results, progress=False)


def test_shift_numbers(study):
    result = study.shift()
    n, layers = study.signals().num_tokens, study.signals().num_layers
    assert len(result["selection_frequency"]) == n and max(result["selection_frequency"]) == 1.0
    assert len(result["mean_attention"]) == n and all(0 < v < 1 for v in result["mean_attention"])
    for key in ("quartile_shares", "quartile_shares_question", "quartile_shares_equal_positions"):
        assert np.asarray(result[key]).shape == (layers, 4) and np.allclose(np.sum(result[key], axis=1), 100.0)
    accuracy = np.asarray(result["quartile_accuracy"])
    assert accuracy.shape == (4, layers) and ((accuracy >= 0) & (accuracy <= 100)).all()
    saved = json.loads((study.folder / "shift.json").read_text())
    assert saved["hardware"]["date"] and saved["questions"] == len(study.dataset)


def test_dispersion_numbers(study):
    result = study.dispersion()
    for name, values in result["signals"].items():
        assert np.isclose(values["cumulative"][-1], 1.0) and np.isclose(np.sum(values["density"]), 1.0), name
        assert 0 < values["top1_share"] <= values["top20pct_share"] <= 1
    assert set(result["accuracy"]) == {"cls", "last", "equal", "random"}
    assert all(0 <= v <= 100 for v in result["accuracy"].values())


def test_results_are_reused_and_never_silently_replaced(study, smoke_results):
    study.shift()
    entries = (study.folder / "accuracy.jsonl").read_text().splitlines()
    again = open_study(smoke=True, results=smoke_results, progress=False)
    again.shift()  # everything cached: no new accuracy entries
    assert (study.folder / "accuracy.jsonl").read_text().splitlines() == entries
    edited = Dataset(study.dataset.name, study.dataset.samples[:3])  # same name, other questions
    with pytest.raises(ValueError, match="dataset_fingerprint"):
        Study(study.subject, edited, results=smoke_results, progress=False)
    assert (study.folder / "signals.npz").is_file()
    with pytest.raises(ValueError, match="layer=9"):
        Study(study.subject, study.dataset, Settings(layer=9), smoke_results)


@pytest.mark.slow
def test_command_writes_every_figure(smoke_results, tmp_path):
    from analysis.__main__ import main

    main(["--smoke", "--figures", str(tmp_path), "--results", str(smoke_results)])
    for name in (
        "fig1_token_selection",
        "fig2_attention_shift",
        "fig3_attention_dispersion",
        "fig4_token_selection_examples",
    ):
        for ext in ("png", "pdf"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 10_000, name
    record = json.loads((tmp_path / "analysis_run.json").read_text())
    assert record["model"] == "smoke-random" and len(record["figures"]) == 8


def test_answers_are_scored_by_exact_match():
    assert exact_match(" Yes.", "yes") and exact_match("three", "3") and not exact_match("yes no", "yes")
    with pytest.raises(ValueError, match="answer"):
        Dataset("x", [drawn_samples(1).samples[0].__class__("a", "q?", None, lambda: None)]).require_answers(
            "Fig. 2(c)"
        )


@pytest.mark.slow
def test_notebooks_execute_in_smoke_mode(smoke_results, tmp_path):
    from analysis.notebooks import NOTEBOOKS, execute

    assert set(NOTEBOOKS) == {"attention_shift", "attention_dispersion", "token_selection"}
    for name in NOTEBOOKS:
        notebook = execute(name, {"SMOKE": True, "RESULTS": str(smoke_results), "FIGURES": str(tmp_path), "THREADS": 1})
        shown = [
            o
            for cell in notebook.cells
            if cell.cell_type == "code"
            for o in cell.outputs
            if "image/png" in o.get("data", {})
        ]
        assert len(shown) == 1, name  # the figure, once
    assert len(list(tmp_path.glob("*.png"))) == 3


def test_pictures_show_the_tokens_the_methods_keep(subject, monkeypatch):
    """Each picture shows the kept set of the generation whose answer it carries: VisPruner's split as
    [CLS] attention and `select` give it, FastV's and random selection's as their own code kept them."""
    from analysis import pictures
    from llava.pruning import fastv, random_pruning, vispruner

    used = {}
    keep_mask, draw = fastv.keep_mask, random_pruning.select

    def recording_keep_mask(last_row, sequence, per_image):
        mask = keep_mask(last_row, sequence, per_image)
        ordinal = sequence.visual.long().cumsum(1) - 1
        used.setdefault("fastv", sorted(ordinal[0][mask[0] & sequence.visual[0]].tolist()))
        return mask

    def recording_select(*args, **kwargs):
        kept = draw(*args, **kwargs)
        used.setdefault("random", kept[0].tolist())
        return kept

    monkeypatch.setattr(fastv, "keep_mask", recording_keep_mask)
    monkeypatch.setattr(random_pruning, "select", recording_select)
    drawn = []
    monkeypatch.setattr(
        pictures, "draw_kept_patches", lambda image, grid, first, second, **kw: drawn.append((first, second)) or image
    )
    sample = drawn_samples(1, size=112).samples[0]
    example = pictures.selection_example(subject, sample, exact_match, budget=12, fastv_layer=2, seed=3)
    model = subject.model
    inputs = subject.encode([sample])
    with torch.no_grad():
        vision = clip.encode(
            model.model.vision_tower,
            inputs["pixel_values"],
            model.config.vision_feature_layer,
            signals={"cls_attention"},
        )
    kept = vispruner.select(vision.features, vision.cls_attention, 12, 0.5)[0].tolist()
    important = sorted(vispruner.attention_order(vision.cls_attention)[0, :6].tolist())
    assert drawn[0] == (important, sorted(set(kept) - set(important)))
    assert drawn[1][0] == used["fastv"] and drawn[2][0] == used["random"]
    assert len(example.panels) == 4 and all(isinstance(p.answer, str) for p in example.panels)
    runs = [("vispruner", {}), ("fastv", {"layer": 2}), ("random", {"seed": 3})]
    for panel, (method, options) in zip(example.panels[1:], runs):  # the answer is that generation's, untraced too
        llava.apply_pruning(model, method, 12, **options)
        try:
            with torch.no_grad():
                output = model.generate(**inputs, max_new_tokens=subject.max_new_tokens, do_sample=False)
        finally:
            llava.remove_pruning(model)
        answer = subject.processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
        assert panel.answer == answer.strip()


def test_jsonl_question_sets(tmp_path):
    from analysis.data import load_jsonl

    (tmp_path / "images").mkdir()
    drawn_samples(1, size=32).samples[0].image().save(tmp_path / "images" / "a.png")
    rows = [
        {"id": "q1", "image": "a.png", "question": "Is it red?", "answer": "yes"},
        {
            "id": "m1",
            "image": "a.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is it?"},
                {"from": "gpt", "value": "A square."},
            ],
        },
        {"question_id": 7, "image": "a.png", "text": "Colour?"},
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    dataset = load_jsonl(path, image_folder=tmp_path / "images")
    assert [(s.id, s.question, s.answer) for s in dataset.samples] == [
        ("q1", "Is it red?", "yes"),
        ("m1", "What is it?", "A square."),
        ("7", "Colour?", None),
    ]
    assert dataset.samples[0].image().size == (32, 32) and len(load_jsonl(path, tmp_path / "images", limit=2)) == 2
    for bad, message in (
        (rows[0] | {"image": "b.png"}, "line 1: image .*b.png not found"),
        ({"image": "a.png"}, "line 1: needs a question"),
        ({"question": "?"}, "line 1: needs an 'image'"),
    ):
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            load_jsonl(path, image_folder=tmp_path / "images")
