"""The Scenette sweep (python -m eval.scenette) on random-weight stand-ins of Scenette-LLaVA: cells
through lmms-eval and our plugin, a new folder per run, resume, dry run, the table, the comparison with
the reference (on planted results), the plot, and argument errors."""

import contextlib
import csv
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgb

pytest.importorskip("lmms_eval")

import llava  # noqa: E402
from eval import binomial, scenette, scenette_compare, scenette_plot, scenette_report  # noqa: E402
from eval.scenette_cells import fit  # noqa: E402
from scenette import data  # noqa: E402
from scenette.evaluate import predict  # noqa: E402
from scenette.model import build_processor, new_model  # noqa: E402
from scenette.prompt import conversation, question_text  # noqa: E402
from test_tables import markdown_rows, scenette_cell, unavailable  # noqa: E402

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


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """The sweep's defaults (results/scenette/ and its runs/) are relative to the current folder: here, tmp_path."""
    monkeypatch.chdir(tmp_path)


def sweep(checkpoint, output, *extra):
    torch.set_num_threads(1)
    where = [] if output is None else ["--output", str(output)]
    return scenette.main(["--model", str(checkpoint), *where, "--threads", "1", "--batch-size", "2", *extra])


SMALL = ("--methods", "vispruner", "fastv", "--budgets", "32", "--per-type", "2")
SMALL_CELLS = ["fastv/n32_limit2.json", "none/full_limit2.json", "vispruner/n32_r0.5_limit2.json"]


@pytest.fixture(scope="module")
def finished(yes_checkpoint, tmp_path_factory):
    """A finished small sweep (explicit --output) and what it printed; tests copy it before changing it."""
    output = tmp_path_factory.mktemp("finished") / "results"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert sweep(yes_checkpoint, output, *SMALL, "--reference", str(output.parent / "none")) == 0
    return output, printed.getvalue()


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its content and modification time."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def cell_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/*.json"))


def expected_existence(per_type):
    answers = [row["answer"] for row in data.eval_rows("existence")[:per_type]]
    return 100 * answers.count("yes") / per_type


@pytest.mark.slow
def test_sweep_writes_cells_table_and_plot_and_resumes(finished, yes_checkpoint, tmp_path):
    output, printed = finished
    existence = expected_existence(2)
    assert existence > 0  # the first existence questions include "yes" ones, so Rel. is defined

    cells = {key: json.loads((output / key).read_text()) for key in cell_files(output)}
    assert sorted(cells) == SMALL_CELLS
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
    header, *rows = markdown_rows(markdown)
    assert header == ["Method", "Tokens", "r", *TYPES, "Acc.", "Rel."]
    assert [row[:3] for row in rows] == [["unpruned", "576", ""], ["fastv", "32", ""], ["vispruner", "32", "0.5"]]
    for row in rows:
        assert row[3] == f"{existence:.1f}" and row[4:9] == ["0.0"] * 5
        assert row[9] == f"{existence / 6:.1f}" and row[10] == "100.0%"
    table = list(csv.DictReader((output / "table.csv").open()))
    expected = [("unpruned", "576", "100"), ("fastv", "32", "100"), ("vispruner", "32", "100")]
    assert [(r["method"], r["tokens"], r["Rel."]) for r in table] == expected
    png = (output / "relative_accuracy.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "No reference results in" in printed and (output / "comparison.md").is_file()

    resumed = shutil.copytree(output, tmp_path / "resumed")
    stamp = {path: path.stat().st_mtime_ns for path in resumed.glob("*/*.json")}
    assert sweep(yes_checkpoint, resumed, *SMALL) == 0  # an explicit --output resumes that folder
    assert {path: path.stat().st_mtime_ns for path in resumed.glob("*/*.json")} == stamp  # finished cells skipped
    assert (resumed / "table.md").read_text() == markdown


@pytest.mark.slow
def test_by_default_a_run_gets_a_new_folder_and_is_compared_with_the_committed_results(
    finished, yes_checkpoint, tmp_path, capsys
):
    reference = shutil.copytree(finished[0], tmp_path / "results" / "scenette")  # the "committed" results
    committed = snapshot(reference)
    assert sweep(yes_checkpoint, None, *SMALL) == 0
    [run] = (reference / "runs").iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z", run.name)  # results/scenette/runs/<UTC time>/
    assert {path: v for path, v in snapshot(reference).items() if run not in path.parents} == committed
    assert cell_files(run) == SMALL_CELLS  # evaluated again, not taken from the reference
    printed = capsys.readouterr().out
    assert [row[-1] for row in markdown_rows(printed.split("This run (")[1])[1:]] == ["same accuracy"] * 3
    assert "The new table matches the reference: every cell has the same accuracy." in printed
    assert (run / "comparison.md").read_text() in printed
    assert printed.endswith(f"This run's folder: results/scenette/runs/{run.name}/\n")

    assert sweep(yes_checkpoint, None, *SMALL) == 0  # the next run does not resume this one: a new folder again
    assert len(list((reference / "runs").iterdir())) == 2 and cell_files(run) == SMALL_CELLS
    outside_runs = {
        path: v for path, v in snapshot(reference).items() if "runs" not in path.relative_to(reference).parts
    }
    assert outside_runs == committed


def test_in_llm_methods_get_their_default_layers_at_this_models_relative_depth(processor):
    model = new_model(processor.tokenizer)
    depth = model.config.text_config.num_hidden_layers
    cell = fit("pdrop", 64, model)
    assert cell.reason is None and cell.adapted == {"layers": tuple(layer * depth // 32 for layer in (8, 16, 24))}
    assert cell.options["layers"] == cell.adapted["layers"]
    assert fit("vispruner", 64, model).adapted == {}
    assert "published schedules" in fit("sparsevlm", 16, model).reason
    assert getattr(model, "pruning_config", None) is None  # fit leaves the model unpruned


@pytest.mark.slow
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


def test_budgets_above_the_visual_tokens_are_refused(yes_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:  # from the checkpoint's config, before the model loads
        sweep(yes_checkpoint, tmp_path, "--methods", "vispruner", "--budgets", "1000")
    assert error.value.code == 2 and "has 576 visual tokens per image; allowed: 1 to 576" in capsys.readouterr().err


# --- dry run -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["first", "last"])
def test_dry_run_writes_nothing_wherever_the_flag_stands(placement, finished, yes_checkpoint, tmp_path, capsys):
    resumed = shutil.copytree(finished[0], tmp_path / "resumed")
    before = snapshot(tmp_path)
    for output, extra in ((None, []), (tmp_path / "new", []), (resumed, ["--rerun"])):
        argv = [*SMALL, *extra]
        argv = ["--dry-run", *argv] if placement == "first" else [*argv, "--dry-run"]
        assert sweep(yes_checkpoint, output, *argv) == 0
        printed = capsys.readouterr().out
        assert printed.startswith("Dry run: nothing is evaluated or written.")
        assert snapshot(tmp_path) == before  # no folder, no log, no cell set aside by --rerun
    assert "/resumed/, which exists and would be resumed" in printed
    assert "3 to run again (the old file is kept)" in printed
    assert not (tmp_path / "results").exists() and not (tmp_path / "new").exists()


def tree(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_script_passes_dry_run_through_in_either_place(yes_checkpoint):
    """scripts/scenette.sh runs in the checkout: its results/ stays as it is."""
    before = tree(REPO / "results")
    for argv in (["--dry-run", "--threads", "1"], ["--threads", "1", "--dry-run"]):
        done = subprocess.run(["bash", str(REPO / "scripts" / "scenette.sh"), "--model", str(yes_checkpoint),
                               "--methods", "vispruner", "--budgets", "64", *argv],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        first_lines = "Dry run: nothing is evaluated or written.\nOutput: a new folder results/scenette/runs/"
        assert done.stdout.startswith(first_lines)
        assert "2 to run; 0 cannot run on this model." in done.stdout
    assert tree(REPO / "results") == before


# --- comparison with the reference ---------------------------------------------------------------


def planted_pair(tmp_path, changes: dict):
    """A reference and a run of the same cells; `changes`: (method, budget) -> correct answers per type in the run."""
    reference, run = tmp_path / "reference", tmp_path / "run"
    cells = {("none", None): {"count": 30}, ("fastv", 64): {"count": 30}, ("vispruner", 64): {"count": 28},
             ("pool", 64): {"reading": 10}}  # fmt: skip
    for (method, budget), correct in cells.items():
        scenette_cell(reference, method, budget, correct)
        scenette_cell(run, method, budget, changes.get((method, budget), correct))
    return reference, run


def verdicts(reference, run) -> dict:
    found, _ = scenette_compare.compare(run, reference)
    return {(v.method, v.budget): v for v in found}


def test_identical_results_match(tmp_path):
    reference, run = planted_pair(tmp_path, {})
    assert {v.kind for v in verdicts(reference, run).values()} == {"same"}
    text = scenette_compare.report(run, reference)
    assert text.endswith("The new table matches the reference: every cell has the same accuracy.\n")
    assert "4 cells compared with" in text and "4 same accuracy, 0 differ" in text


def test_differences_are_reported_with_their_size_and_binomial_noise(tmp_path):
    # fastv: one count answer lost (-0.4 points); pool: reading 10 -> 30 of 40 (+8.3 points); none: two
    # answers swapped within a type (same accuracy, 2 answers changed)
    reference, run = planted_pair(tmp_path, {("fastv", 64): {"count": 29}, ("pool", 64): {"reading": 30}})
    swapped = json.loads((run / "none/full_limit40.json").read_text())
    assert swapped["answers"]["count"][0] == "right" and swapped["answers"]["count"][-1] == "wrong"
    swapped["answers"]["count"][0], swapped["answers"]["count"][-1] = "wrong", "right"
    (run / "none/full_limit40.json").write_text(json.dumps(swapped))
    scenette_cell(run, "divprune", 64, {})  # no reference cell
    unavailable(run, "tome", 64, "cannot merge")
    found = verdicts(reference, run)
    assert found["none", None].kind == "same" and found["none", None].changed == 2
    assert found["vispruner", 64].kind == "same" and found["vispruner", 64].changed == 0
    fastv, pool = found["fastv", 64], found["pool", 64]
    assert fastv.delta == pytest.approx(-2.5 / 6) and fastv.changed == 1
    p = [1, 1, 1, (30 + 29) / 80, 1, 1]  # per type, the mean of the two runs' accuracies; 40 questions each
    noise = 100 * 1.959964 * math.sqrt(sum(2 * x * (1 - x) / 40 for x in p)) / 6
    assert fastv.noise == pytest.approx(noise) and fastv.kind == "within noise"
    assert fastv.text == f"differs: Acc. -0.4 points (count -2.5), within binomial noise (±{noise:.1f})"
    assert pool.delta == pytest.approx(50 / 6) and pool.kind == "beyond noise" and pool.changed == 20
    assert found["divprune", 64].kind == "no reference cell" and found["tome", 64].text.startswith("n/a here;")
    text = scenette_compare.report(run, reference)
    assert "matches" not in text
    assert "4 cells compared with" in text and "2 same accuracy, 2 differ (1 within binomial noise, 1 beyond)" in text
    assert "1 n/a without reference cell, 1 no reference cell." in text
    assert text.endswith(f"largest: pool 64, Acc. +8.3 points, beyond binomial noise (±{pool.noise:.1f}).\n")


def test_cells_made_with_other_settings_are_not_compared(tmp_path):
    reference, run = planted_pair(tmp_path, {})
    scenette_cell(run, "fastv", 64, {"count": 30}, checkpoint="retrained")
    assert verdicts(reference, run)["fastv", 64].text == "not comparable: the reference has other checkpoint"
    assert "matches" not in scenette_compare.report(run, reference)


# --- the plot ------------------------------------------------------------------------------------


def test_every_method_has_its_own_colour_and_marker():
    methods = [*llava.list_methods(), "none", *(f"future_{i}" for i in range(len(scenette_plot.SPARE_COLOURS)))]
    style = scenette_plot.styles(methods)
    assert set(style) == set(methods)
    colours = [to_hex(s.colour) for s in style.values()]
    assert len(set(colours)) == len(methods) and len({s.marker for s in style.values()}) == len(methods)
    with pytest.raises(ValueError, match="more methods than plot styles"):
        scenette_plot.styles([*methods, "one_too_many"])


def test_the_plot_shows_every_method_with_binomial_error_bars(tmp_path):
    """ToMe's single point at 128 sits on VisPruner's (same accuracy): both must still be seen."""
    folder = tmp_path / "sweep"
    scenette_cell(folder, "none", None, {"count": 30})
    for budget, count in ((128, 24), (64, 20)):
        for method in ("vispruner", "divprune", "visionzip"):
            scenette_cell(folder, method, budget, {"count": count})
    scenette_cell(folder, "tome", 128, {"count": 24})
    [run] = scenette_report.load(folder)
    figure = scenette_plot.figure(run)
    axes = figure.axes[0]
    bars = {c.get_label(): c for c in axes.containers}
    assert set(bars) == {"VisPruner", "divprune", "visionzip", "tome"}
    drawn = {label: c.lines[0] for label, c in bars.items()}
    assert len({to_hex(line.get_color()) for line in drawn.values()}) == 4
    assert len({line.get_marker() for line in drawn.values()}) == 4
    x = {label: tuple(line.get_xdata()) for label, line in drawn.items()}
    assert len({xs[-1] for xs in x.values()}) == 4  # side by side at 128, not on top of each other
    tome = bars["tome"]
    [segments] = [c.get_segments() for c in tome.lines[2]]
    low, high = segments[0][:, 1]
    rel = 100 * (5 + 24 / 30) / 6
    assert (low + high) / 2 == pytest.approx(rel)
    assert (high - low) / 2 == pytest.approx(binomial.relative_half_width(json.loads(
        (folder / "tome/n128_limit40.json").read_text()), run.unpruned))  # fmt: skip
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    box = axes.get_window_extent()
    inside = pixels[int(pixels.shape[0] - box.y1) : int(pixels.shape[0] - box.y0), int(box.x0) : int(box.x1)]
    for label, line in drawn.items():  # each method's own colour shows inside the axes (not only in the legend)
        colour = (np.array(to_rgb(line.get_color())) * 255).round()
        assert (np.abs(inside - colour).max(axis=-1) <= 1).sum() > 20, f"{label} is hidden"
