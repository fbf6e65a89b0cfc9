"""The Scenette sweep (python -m eval.scenette) on random-weight stand-ins of Scenette-LLaVA: cells
through lmms-eval and our plugin, resume, the table, the plot, and argument errors."""
import csv
import json

import pytest
import torch

pytest.importorskip("lmms_eval")

import llava  # noqa: E402
from eval import scenette  # noqa: E402
from eval.scenette_cells import fit  # noqa: E402
from scenette import data  # noqa: E402
from scenette.evaluate import predict  # noqa: E402
from scenette.model import build_processor, new_model  # noqa: E402
from scenette.prompt import conversation, question_text  # noqa: E402

TYPES = ["Existence", "Colour", "Shape", "Count", "Position", "Reading"]


def yes_sayer(tokenizer):
    """Scenette-LLaVA's architecture and compute, answering every question "yes" then </s>: the language
    model's layers write nothing into the residual stream (zero output projections), so the next token
    depends on the current one only, and lm_head holds that bigram table."""
    model = new_model(tokenizer)
    language = model.model.language_model
    yes, eos = tokenizer(" yes", add_special_tokens=False).input_ids[0], tokenizer.eos_token_id
    last = tokenizer(conversation(question_text("?"))).input_ids[-1]  # the prompt's last token (":")
    with torch.no_grad():
        for layer in language.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embedding = language.embed_tokens.weight
        model.lm_head.weight.zero_()
        model.lm_head.weight[yes] = 50 * embedding[last] / embedding[last].norm()
        model.lm_head.weight[eos] = 50 * embedding[yes] / embedding[yes].norm()
    return model


def save(model, processor, folder):
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def processor():
    return build_processor()


@pytest.fixture(scope="module")
def yes_checkpoint(tmp_path_factory, processor):
    return save(yes_sayer(processor.tokenizer), processor, tmp_path_factory.mktemp("yes-sayer"))


def sweep(checkpoint, output, *extra):
    torch.set_num_threads(1)
    argv = ["--model", str(checkpoint), "--output", str(output), "--threads", "1", "--batch-size", "2", *extra]
    return scenette.main(argv)


def expected_existence(per_type):
    answers = [row["answer"] for row in data.eval_rows("existence")[:per_type]]
    return 100 * answers.count("yes") / per_type


def test_sweep_writes_cells_table_and_plot_and_resumes(yes_checkpoint, tmp_path, capsys):
    output = tmp_path / "results"
    assert sweep(yes_checkpoint, output, "--methods", "vispruner", "fastv", "--budgets", "32", "--per-type", "2") == 0
    printed = capsys.readouterr().out
    existence = expected_existence(2)
    assert existence > 0  # the first existence questions include "yes" ones, so Rel. is defined

    cells = {p.relative_to(output).as_posix(): json.loads(p.read_text()) for p in output.glob("*/*.json")}
    assert sorted(cells) == ["fastv/n32_limit2.json", "none/full_limit2.json", "vispruner/n32_r0.5_limit2.json"]
    for cell in cells.values():  # every answer went through lmms-eval, the plugin and the model
        assert cell["questions"] == {t.lower(): 2 for t in TYPES}
        assert all(answers == ["yes", "yes"] for answers in cell["answers"].values())
        assert cell["accuracy"] == {t.lower(): (existence if t == "Existence" else 0.0) for t in TYPES}
        assert cell["mean"] == pytest.approx(existence / 6)
        assert cell["hardware"]["cpu_threads"] == 1 and cell["seconds"] > 0
    assert cells["vispruner/n32_r0.5_limit2.json"]["options"] == {"important_ratio": 0.5}
    assert cells["fastv/n32_limit2.json"]["visual_token_num"] == 32

    markdown = (output / "table.md").read_text()
    assert markdown in printed
    rows = [line.split(" | ") for line in markdown.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == ["| Method", "Tokens", "r", *TYPES, "Acc.", "Rel. |"]
    assert [row[:3] for row in rows[1:]] == [["| unpruned", "576", ""], ["| fastv", "32", ""], ["| vispruner", "32", "0.5"]]
    for row in rows[1:]:
        assert row[3] == f"{existence:.1f}" and row[4:9] == ["0.0"] * 5
        assert row[9] == f"{existence / 6:.1f}" and row[10] == "100.0% |"
    table = list(csv.DictReader((output / "table.csv").open()))
    assert [(r["method"], r["tokens"], r["Rel."]) for r in table] == [("unpruned", "576", "100"), ("fastv", "32", "100"),
                                                                       ("vispruner", "32", "100")]  # fmt: skip
    png = (output / "relative_accuracy.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000

    stamp = {path: path.stat().st_mtime_ns for path in output.glob("*/*.json")}
    assert sweep(yes_checkpoint, output, "--methods", "vispruner", "fastv", "--budgets", "32", "--per-type", "2") == 0
    assert {path: path.stat().st_mtime_ns for path in output.glob("*/*.json")} == stamp  # finished cells skipped
    assert (output / "table.md").read_text() == markdown


def test_cells_that_cannot_run_on_this_model_show_na_and_other_settings_are_not_reused(yes_checkpoint, processor, tmp_path):
    output = tmp_path / "results"
    assert sweep(yes_checkpoint, output, "--methods", "tome", "--budgets", "16", "--per-type", "1") == 0
    assert sorted(p.relative_to(output).as_posix() for p in output.glob("*/*.json")) == ["none/full_limit1.json"]
    markdown = (output / "table.md").read_text()
    assert "| tome | 16 |  | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |" in markdown
    assert "tome at 16: n/a (tome cannot merge 576 tokens" in markdown

    other = save(new_model(processor.tokenizer, seed=1), processor, tmp_path / "other")
    with pytest.raises(SystemExit, match="other checkpoint than this run; pass --rerun"):
        sweep(other, output, "--methods", "tome", "--budgets", "16", "--per-type", "1")
    assert sweep(other, output, "--methods", "tome", "--budgets", "16", "--per-type", "1", "--rerun") == 0
    kept = sorted(p.name for p in (output / "none").glob("*.json"))
    assert len(kept) == 2 and kept[0].startswith("full_limit1.before-")  # the old result stays beside the new one


def test_in_llm_methods_get_their_default_layers_at_this_models_relative_depth(processor):
    model = new_model(processor.tokenizer)
    depth = model.config.text_config.num_hidden_layers
    cell = fit("pdrop", 64, model)
    assert cell.reason is None and cell.adapted == {"layers": tuple(l * depth // 32 for l in (8, 16, 24))}
    assert cell.options["layers"] == cell.adapted["layers"]
    assert fit("vispruner", 64, model).adapted == {}
    assert "published schedules" in fit("sparsevlm", 16, model).reason
    assert getattr(model, "pruning_config", None) is None  # fit leaves the model unpruned


def test_plugin_prompts_match_the_direct_evaluation(processor, tmp_path):
    """Random weights answer differently to any other prompt or image: the sweep's answers (lmms-eval,
    plugin, Scenette's conversation template) equal scenette.evaluate's on the same questions. Random [CLS]
    attention is nearly flat (ties within rounding), so the vision tower's queries and keys are scaled
    up to give VisPruner a clear ranking; one question per batch for the same reason."""
    model = new_model(processor.tokenizer, seed=3)
    with torch.no_grad():
        for layer in model.model.vision_tower.encoder.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    checkpoint = save(model, processor, tmp_path / "random")
    argv = ["--methods", "vispruner", "--budgets", "16", "--per-type", "1", "--batch-size", "1"]
    assert sweep(checkpoint, tmp_path / "out", *argv) == 0
    rows = data.subset(data.eval_rows(), 1)
    for cell, pruning in (("none/full_limit1.json", None), ("vispruner/n16_r0.5_limit1.json", 16)):
        answers = json.loads((tmp_path / "out" / cell).read_text())["answers"]
        if pruning:
            llava.apply_pruning(model, "vispruner", pruning)
        direct = predict(model, processor, rows, batch_size=1, max_new_tokens=8, progress=False)
        direct = [answer.split("\n\n")[0].strip() for answer in direct]  # lmms-eval's default stop sequence
        assert [answers[row["type"]][0] for row in rows] == direct
        assert len(set(direct)) >= 3  # the answers do depend on the prompt and image


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--methods", "vispruner", "nosuch"], "unknown method(s) nosuch; allowed: divprune, "),
        (["--budgets", "64", "0"], "--budgets: must be a positive integer, got '0'"),
        (["--budgets", "sixty"], "--budgets: must be a positive integer, got 'sixty'"),
        (["--model", "/nonexistent/scenette"], "train one with `bash scripts/train_scenette.sh`"),
    ],
)
def test_bad_arguments_say_what_is_allowed(argv, message, yes_checkpoint, capsys):
    argv = ["--model", str(yes_checkpoint), *argv] if "--model" not in argv else argv
    with pytest.raises(SystemExit) as error:
        scenette.parse_args(argv)
    assert error.value.code == 2
    assert message in capsys.readouterr().err


def test_budgets_above_the_visual_tokens_are_refused(yes_checkpoint, tmp_path):
    with pytest.raises(SystemExit, match="has 576 visual tokens per image"):
        sweep(yes_checkpoint, tmp_path, "--methods", "vispruner", "--budgets", "1000")
