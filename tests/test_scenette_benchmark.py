"""Scenette's generator, questions, prompts, tokenizer and scoring (no trained model needed)."""

import numpy as np
import pytest

from scenette import data, prompt
from scenette.glyphs import GLYPHS
from scenette.llava_training import background_share, content_patches, encode, expand_image, sample_turns
from scenette.model import build_processor
from scenette.questions import CATEGORIES, QUESTION_TYPES, all_question_texts, answer_vocabulary
from scenette.scene import BACKGROUND_LABEL, COLOURS, IMAGE_SIZE, MAX_OBJECTS, SHAPES, SIGN_LABEL, render, sample_scene
from scenette.tokenizer import corpus

# Fingerprints of the fixed evaluation sets (questions, answers, scene seeds). A change means the
# benchmark changed: bump data.GENERATOR_VERSION, re-measure every reported number, update these.
FINGERPRINTS = {
    "existence": "9cb98341d77f347d",
    "colour": "a94780a65f04fc8a",
    "shape": "06ae83832a59f6e5",
    "count": "0d95b8336d19ea2d",
    "position": "3588252fa938e1f9",
    "reading": "c6ea869097f86606",
}


def test_scenes_are_deterministic_and_well_formed():
    for seed in range(20):
        scene = sample_scene(seed)
        assert scene == sample_scene(seed)
        image, labels = render(scene)
        again, _ = render(sample_scene(seed))
        assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8
        assert np.array_equal(image, again)
        assert 1 <= len(scene.objects) <= MAX_OBJECTS and len(scene.signs) == 1
        present = set(np.unique(labels).tolist())
        assert present <= {BACKGROUND_LABEL, SIGN_LABEL, *range(len(scene.objects))}
        assert SIGN_LABEL in present and all(k in present for k in range(len(scene.objects)))
    assert not np.array_equal(render(sample_scene(0))[0], render(sample_scene(1))[0])


def test_scenes_include_small_objects_and_several_sizes():
    sides = [o.size for seed in range(200) for o in sample_scene(seed).objects]
    assert min(sides) <= 12 and max(sides) >= 54
    assert sum(side <= 14 for side in sides) > 0.25 * len(sides)


def test_eval_sets_are_fixed_balanced_and_disjoint_from_training():
    rows = data.eval_rows()
    assert len(rows) == len(QUESTION_TYPES) * data.QUESTIONS_PER_TYPE
    for qtype in QUESTION_TYPES:
        typed = data.eval_rows(qtype)
        assert data.fingerprint(typed) == FINGERPRINTS[qtype], f"{qtype} evaluation set changed"
        assert {row["category"] for row in typed} == set(CATEGORIES[qtype])
    existence = data.eval_rows("existence")
    for category in CATEGORIES["existence"]:
        answers = [row["answer"] for row in existence if row["category"] == category]
        assert answers.count("yes") == answers.count("no") == len(answers) // 2
    assert min(row["scene_seed"] for row in rows) >= data.EVAL_SEED_BASE
    assert len({row["question_id"] for row in rows}) == len(rows)


def test_answers_agree_with_the_scene():
    for row in data.eval_rows("position")[:40] + data.eval_rows("colour")[:40] + data.eval_rows("reading")[:20]:
        scene = sample_scene(row["scene_seed"])
        if row["type"] == "reading":
            assert row["answer"] == scene.sign.glyph
        elif row["type"] == "colour":
            shape = row["question"].split()[-1].rstrip("?")
            assert [o.colour for o in scene.objects if o.shape == shape] == [row["answer"]]
        else:
            words = row["question"].rstrip("?").split()
            colour, shape = next(w for w in words if w in COLOURS), next(w for w in words if w in SHAPES)
            (target,) = [o for o in scene.objects if (o.colour, o.shape) == (colour, shape)]
            assert ("left" if target.centre[0] < IMAGE_SIZE / 2 else "right") in row["answer"]


def test_eval_files_are_written_on_first_use_and_rewritten_when_stale(tmp_path):
    path = data.eval_file("count", tmp_path)
    assert len(path.read_text().splitlines()) == data.QUESTIONS_PER_TYPE
    path.write_text("stale\n")
    (tmp_path / "manifest.json").write_text("{}")
    assert data.eval_file("count", tmp_path).read_text().splitlines()[0].startswith("{")


def test_tokenizer_is_word_level_covers_the_benchmark_and_round_trips():
    tokenizer = build_processor().tokenizer
    for text in corpus() + [prompt.training_conversation([("What is written on the sign?", "K")])[0]]:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.unk_token_id not in ids, text
        assert tokenizer.decode(ids) == text
    assert len(tokenizer(" top-left", add_special_tokens=False).input_ids) == 3
    assert {a for a in answer_vocabulary()} >= set(GLYPHS) | {"yes", "no"}
    assert len(all_question_texts()) == len(set(all_question_texts()))


def test_training_sequences_start_exactly_like_evaluation_prompts():
    processor = build_processor()
    scene = sample_scene(12345)
    turns = sample_turns(scene, 8)
    text, _ = prompt.training_conversation(turns)
    messages = [m for q, a in turns for m in ((prompt.USER, prompt.question_text(q)), (prompt.ASSISTANT, a))]
    messages[0] = (prompt.USER, f"<image>\n{messages[0][1]}")
    assert text == prompt.TEMPLATE.prompt(messages)  # LLaVA's own multi-turn format
    ids, labels = encode(processor.tokenizer, turns)
    ids, labels, positions = expand_image(ids, labels, processor.tokenizer.image_token_id, np.arange(576), 576)
    first = prompt.conversation(prompt.question_text(turns[0][0]))
    expected = processor(text=first, images=render(scene)[0], return_tensors="pt").input_ids[0].tolist()
    assert ids[: len(expected)] == expected
    assert positions == list(range(len(ids)))
    answers = processor.tokenizer.decode([i for i, label in zip(ids, labels) if label != -100])
    assert answers == "".join(f" {a}</s>" for _, a in turns)


def test_training_questions_follow_the_type_weights():
    answers = [answer for seed in range(300) for _, answer in sample_turns(sample_scene(seed), 2)]
    drawn = {
        "existence": sum(a in ("yes", "no") for a in answers),
        "colour": sum(a in COLOURS for a in answers),
        "position": sum(
            a in ("left", "right", "top-left", "top-right", "bottom-left", "bottom-right") for a in answers
        ),
    }
    assert drawn["position"] > 2 * drawn["colour"] and drawn["position"] > 2 * drawn["existence"], drawn


def test_curriculum_leaves_background_out_at_its_own_positions_then_shows_whole_images():
    ids, labels = [1, 2, 9, 3, 4], [-100, -100, -100, -100, 5]
    kept = np.array([0, 5, 7])
    out_ids, out_labels, positions = expand_image(ids, labels, 9, kept, 10)
    assert out_ids == [1, 2, 9, 9, 9, 3, 4] and out_labels == [-100] * 6 + [5]
    assert positions == [0, 1, 2, 7, 9, 12, 13]  # the text after the image sits where it would with all 10
    _, _, compacted = expand_image(ids, labels, 9, kept, 10, compact=True)
    assert compacted == list(range(7))  # as a pruned image arrives
    shares = [background_share(step, 100, 50) for step in (0, 99, 100, 124, 149, 150, 1000)]
    assert shares[:2] == [0.0, 0.0] and 0 < shares[2] < shares[3] < shares[4] == 1.0 == shares[5] == shares[6]
    labels_map = np.full((28, 28), BACKGROUND_LABEL)
    labels_map[0:4, 0:4] = 0  # 16 pixels of an object in patch 0
    labels_map[14:16, 14:16] = 1  # 4 pixels in patch 3: too few to count
    assert content_patches(labels_map, 14).tolist() == [True, False, False, False]


@pytest.mark.parametrize(
    "prediction, target, score",
    [
        ("red", "red", 1),
        (" Red.", "red", 1),
        ("top - left", "top-left", 1),
        ("three", "3", 1),
        ("k", "K", 1),
        ("red circle", "red", 0),
        ("", "no", 0),
        ("yes", "no", 0),
    ],
)
def test_scoring(prediction, target, score):
    assert prompt.score_answer(prediction, target) == score
