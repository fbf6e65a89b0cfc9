"""Our lmms-eval model in-process: task options keyed for llava, batching, resume, argument checks."""

import math
from types import SimpleNamespace

import pytest

from eval.plugin.task_options import TaskOptions
from eval_fixtures import write_checkpoint, write_next_checkpoint
from support import shapes_image

pytest.importorskip("lmms_eval")
import torch  # noqa: E402
from loguru import logger  # noqa: E402

from eval.plugin import model as plugin_model  # noqa: E402
from eval.plugin.model import PrunedLlava, resolve_device  # noqa: E402


class FakeTask:
    """Just what lmms-eval's ConfigurableTask offers the model: its config and bound doc functions."""

    def __init__(self, prompt_table, generation_table=None):
        self.config = SimpleNamespace(task="fake", lmms_eval_specific_kwargs=prompt_table,
                                      model_specific_generation_kwargs=generation_table)  # fmt: skip
        default = prompt_table.get("default") if prompt_table else None
        self.lmms_eval_specific_kwargs = default  # what lmms-eval resolved for an unknown model name

    def doc_to_text(self, doc):
        return doc["q"] + (self.lmms_eval_specific_kwargs or {}).get("post", "")

    def doc_to_visual(self, doc):
        return [doc["image"]]


def test_task_options_follow_the_llava_entries_without_touching_the_task():
    task = FakeTask({"default": {"post": " D"}, "llava": {"post": " L"}}, {"llava": {"max_new_tokens": 3}})
    options = TaskOptions("llava")
    keyed = options.keyed(task.doc_to_visual)
    doc = {"q": "Q?", "image": None}
    assert options.prompt(keyed, "Q? D", doc) == "Q? L"
    assert keyed.generation == {"max_new_tokens": 3}
    assert task.doc_to_text(doc) == "Q? D"  # the task lmms-eval holds is unchanged
    with pytest.raises(ValueError, match="few-shot examples or a system instruction"):
        options.prompt(keyed, "An example.\n\nQ? D", doc)
    assert TaskOptions("llava").keyed(FakeTask({"default": {"post": " D"}}).doc_to_visual) is None
    assert TaskOptions("").keyed(task.doc_to_visual) is None


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("plugin"))


def requests_for(model, docs, generation=None):
    task = FakeTask({"default": {"post": "\nAnswer briefly."}})
    model.task_dict = {"fake": {"test": docs}}
    generation = generation or {"max_new_tokens": 4, "temperature": 0, "until": ["ASSISTANT:"]}
    return [SimpleNamespace(args=(task.doc_to_text(doc), dict(generation), task.doc_to_visual, i, "fake", "test"))
            for i, doc in enumerate(docs)]  # fmt: skip


@pytest.fixture(scope="module")
def docs():
    return [{"q": f"What is shown {i}?", "image": shapes_image(40 + 16 * i, seed=i)} for i in range(3)]


def make(checkpoint, **kwargs):
    args = dict(pretrained=str(checkpoint), method="vispruner", visual_token_num=8, important_ratio=0.5, device="cpu")
    return PrunedLlava(**{**args, **kwargs})


def test_batches_answer_like_single_requests(checkpoint, docs):
    single = make(checkpoint, batch_size=1)
    batched = make(checkpoint, batch_size=3)
    assert batched.generate_until(requests_for(batched, docs)) == single.generate_until(requests_for(single, docs))


def test_a_rerun_takes_answers_from_the_response_log(checkpoint, docs, tmp_path):
    model = make(checkpoint, batch_size=2, response_log=str(tmp_path / "responses"))
    first = model.generate_until(requests_for(model, docs))
    again = make(checkpoint, batch_size=2, response_log=str(tmp_path / "responses"))
    again.model.generate = None  # any generation attempt would fail
    assert again.generate_until(requests_for(again, docs)) == first
    other = make(checkpoint, visual_token_num=4, response_log=str(tmp_path / "responses"))
    other.model.generate = None  # other settings are other answers: not taken from the log
    with pytest.raises(TypeError):
        other.generate_until(requests_for(other, docs[:1]))


def test_loglikelihood_scores_the_continuation(checkpoint, docs):
    model = make(checkpoint)
    model.task_dict = {"fake": {"test": docs}}
    task = FakeTask({"default": {}})
    requests = [SimpleNamespace(args=("What is shown?", "yes", task.doc_to_visual, 0, "fake", "test")),
                SimpleNamespace(args=("What is shown?", "no no no", task.doc_to_visual, 0, "fake", "test"))]  # fmt: skip
    (one, greedy_one), (three, _) = model.loglikelihood(requests)
    assert math.isfinite(one) and one < 0 and three < one and isinstance(greedy_one, bool)


def test_bad_model_arguments_are_named(checkpoint):
    with pytest.raises(ValueError, match="visual_token_num is required"):
        make(checkpoint, visual_token_num=None)
    with pytest.raises(ValueError, match="method=none keeps every visual token"):
        make(checkpoint, method="none")
    with pytest.raises(ValueError, match="unknown option.*important_rate"):
        make(checkpoint, important_ratio=None, important_rate=0.5)
    with pytest.raises(ValueError, match="paper_mode applies to LLaVA-NeXT"):
        make(checkpoint, paper_mode=True)
    with pytest.raises(ValueError, match="unknown dtype"):
        make(checkpoint, dtype="half8")


def test_paper_mode_prunes_each_of_the_five_crops(tmp_path, docs):
    checkpoint = write_next_checkpoint(tmp_path)
    pruned = make(checkpoint, paper_mode=True, visual_token_num=4)
    assert pruned.model.pruning_config.host_options == {"layout": "paper"}
    assert pruned.processor.image_processor.image_grid_pinpoints == [[112, 112]]  # 2x2 tiles of 56 px
    full = PrunedLlava(pretrained=str(checkpoint), method="none", paper_mode=True, device="cpu")
    assert full.model.pruning_config.visual_token_num == 16  # every token of every crop: the paper's baseline
    seen = []
    pruned.model.model.language_model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True
    )
    full.model.model.language_model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True
    )
    generation = {"max_new_tokens": 1, "temperature": 0}
    pruned.generate_until(requests_for(pruned, docs[:1], generation))
    full.generate_until(requests_for(full, docs[:1], generation))
    assert seen[0] - seen[1] == 5 * 4 - 5 * 16  # 5 crops, 4 instead of 16 tokens each, no newline tokens


@pytest.fixture
def warnings():
    """The plugin's loguru warnings, with the once-per-process CPU fallback warning re-armed."""
    messages = []
    sink = logger.add(lambda message: messages.append(str(message)), level="WARNING", format="{message}")
    plugin_model._warn_cpu_fallback.cache_clear()
    yield messages
    logger.remove(sink)
    plugin_model._warn_cpu_fallback.cache_clear()


def test_cuda_falls_back_to_the_cpu_once_with_a_warning_when_there_is_none(monkeypatch, warnings):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cuda") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cpu")
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cpu")  # a multi-process run without GPUs
    assert warnings == ["vispruner: device cuda requested but CUDA is not available; running on cpu "
                        "(pass --device cpu to silence this)\n",
                        "vispruner: device cuda:1 requested but CUDA is not available; running on cpu "
                        "(pass --device cpu to silence this)\n"]  # fmt: skip


def test_the_requested_device_is_kept_when_it_exists(monkeypatch, warnings):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=2) == torch.device("cuda", 2)  # each process on its own GPU
    assert warnings == []


def test_lmms_eval_default_device_loads_on_the_cpu_without_cuda(checkpoint, monkeypatch, warnings):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = make(checkpoint, device="cuda")  # lmms-eval passes its --device, cuda unless told otherwise
    assert model.device == torch.device("cpu") and model.model.device == torch.device("cpu")
    assert model.model.dtype == torch.float32 and len(warnings) == 1
