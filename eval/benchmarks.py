"""The paper's benchmarks: which lmms-eval tasks run each one and which number goes in the table.

Kept free of heavy imports: the launcher's `--dry-run` and the table renderer read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Benchmark:
    name: str  # script and results-folder name
    label: str  # table column
    tasks: tuple[str, ...]  # lmms-eval tasks or groups run together
    # (task, metric) pairs averaged into the table value, times `scale`; empty: scored elsewhere
    metrics: tuple[tuple[str, str], ...] = ()
    scale: float = 100.0
    # where the paper's number comes from when it is not computed locally (a submission server)
    server: str | None = None
    judged: bool = False  # GPT-judged video QA: `python -m eval.judge` writes judged.json
    extra: tuple[tuple[str, str, str], ...] = field(default=())  # (label, task, metric) reported beside it

    def describe(self) -> dict:
        return asdict(self)


OCRBENCH_POINTS = 1000.0  # lmms-eval reports the fraction of OCRBench's 1000 points; papers report points


def _one(task: str, metric: str = "exact_match", **kwargs) -> dict:
    return {"tasks": (task,), "metrics": ((task, metric),), **kwargs}


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("vqav2", "VQAv2", ("vqav2_test",), server="EvalAI VQAv2 challenge, test-dev phase: upload submissions/vqav2-test-submission-*.json"),
        Benchmark("gqa", "GQA", **_one("gqa")),
        Benchmark("vizwiz", "VizWiz", ("vizwiz_vqa_test",), server="EvalAI VizWiz-VQA challenge, test-dev phase: upload submissions/vizwiz_vqa-test-submission-*.json"),
        Benchmark("sqa", "SQA-IMG", **_one("scienceqa_img")),
        Benchmark("textvqa", "TextVQA", **_one("textvqa_val_ocr")),
        Benchmark(
            "pope", "POPE", ("pope_paper",),
            metrics=tuple((f"pope_paper_{split}", "pope_f1_score") for split in ("random", "popular", "adversarial")),
        ),
        Benchmark(
            "mme", "MME", **_one("mme", "mme_perception_score", scale=1.0),
            extra=(("MME-cog", "mme", "mme_cognition_score"),),
        ),
        Benchmark("mmbench", "MMB", **_one("mmbench_en_dev_static", "gpt_eval_score", scale=1.0),
                  server="MMBench server (dev-EN): upload submissions/mmbench_en_dev_results.xlsx"),
        Benchmark("mmbench_cn", "MMB-CN", **_one("mmbench_cn_dev_static", "gpt_eval_score", scale=1.0),
                  server="MMBench server (dev-CN): upload submissions/mmbench_cn_dev_results.xlsx"),
        Benchmark("mmvet", "MM-Vet", ("mmvet_paper",), server="MM-Vet online evaluator (GPT-4): upload submissions/mmvet_submission.json"),
        Benchmark("seed", "SEED-I", **_one("seedbench", "seed_image")),
        # the chat-template families' papers (lmms-eval 0.7.3's own tasks; val splits where test needs a server)
        Benchmark("textvqa_val", "TextVQA-val", **_one("textvqa_val")),  # no OCR tokens in the prompt
        Benchmark("docvqa", "DocVQA-val", **_one("docvqa_val", "anls")),
        Benchmark("infovqa", "InfoVQA-val", **_one("infovqa_val", "anls")),
        Benchmark("chartqa", "ChartQA", **_one("chartqa", "relaxed_overall")),
        Benchmark("ai2d", "AI2D", **_one("ai2d")),
        Benchmark("mmmu", "MMMU-val", **_one("mmmu_val", "mmmu_acc")),
        Benchmark("ocrbench", "OCRBench", **_one("ocrbench", "ocrbench_accuracy", scale=OCRBENCH_POINTS)),
        Benchmark("mmstar", "MMStar", **_one("mmstar", "average")),
        Benchmark("realworldqa", "RealWorldQA", **_one("realworldqa")),
        Benchmark("tgif", "TGIF", ("videollava_tgif_qa",), judged=True),
        Benchmark("msvd", "MSVD", ("videollava_msvd_qa",), judged=True),
        Benchmark("msrvtt", "MSRVTT", ("videollava_msrvtt_qa",), judged=True),
        Benchmark("activitynet", "ActivityNet", ("videollava_activitynet_qa",), judged=True),
    ]
}  # fmt: skip

FAMILIES = {
    "v1_5": {
        "model": "liuhaotian/llava-v1.5-7b",
        "conv_template": "vicuna_v1",
        "benchmarks": ("vqav2", "gqa", "vizwiz", "sqa", "textvqa", "pope", "mme", "mmbench", "mmbench_cn", "mmvet", "seed"),
        "table": ("vqav2", "gqa", "vizwiz", "sqa", "textvqa", "pope", "mme", "mmbench", "mmbench_cn", "mmvet"),
        "model_args": {},
    },
    "v1_6": {
        "model": "liuhaotian/llava-v1.6-vicuna-7b",
        "conv_template": "vicuna_v1",
        "benchmarks": ("vqav2", "gqa", "vizwiz", "sqa", "textvqa", "pope", "mme", "mmbench", "mmbench_cn", "mmvet", "seed"),
        "table": ("vqav2", "gqa", "textvqa", "pope", "mme"),
        "model_args": {"paper_mode": "true"},  # the paper's fixed 672x672 grid, 5 x 576 tokens
    },
    "video": {
        "model": "LanguageBind/Video-LLaVA-7B-hf",
        "conv_template": "llava_v1",
        "benchmarks": ("tgif", "msvd", "msrvtt", "activitynet"),
        "table": ("tgif", "msvd", "msrvtt"),
        "model_args": {},
    },
}  # fmt: skip

# Chat-template families: prompted as lmms-eval's own model for the family prompts them (eval/plugin/styles.py),
# so no conversation template; `table` is every benchmark (no paper table of VisPruner's covers them).
CHAT_FAMILIES = {
    "qwen2_vl": ("Qwen/Qwen2-VL-7B-Instruct",
                 ("mmmu", "docvqa", "infovqa", "chartqa", "textvqa_val", "ocrbench", "ai2d", "mmstar", "realworldqa", "mme")),
    "qwen2_5_vl": ("Qwen/Qwen2.5-VL-7B-Instruct",
                   ("mmmu", "docvqa", "infovqa", "chartqa", "textvqa_val", "ocrbench", "ai2d", "mmstar", "mme")),
    "qwen3_vl": ("Qwen/Qwen3-VL-8B-Instruct",
                 ("mmmu", "docvqa", "infovqa", "chartqa", "ocrbench", "ai2d", "mmstar", "realworldqa")),
    "onevision": ("llava-hf/llava-onevision-qwen2-7b-ov-hf",
                  ("ai2d", "chartqa", "docvqa", "infovqa", "mme", "mmstar", "mmmu", "seed", "sqa", "realworldqa")),
    "internvl": ("OpenGVLab/InternVL3-8B-hf",
                 ("ai2d", "chartqa", "docvqa", "infovqa", "textvqa_val", "ocrbench", "mmmu", "mmstar", "realworldqa",
                  "mme", "pope")),
    "gemma3": ("google/gemma-3-4b-it", ("mmmu", "docvqa", "infovqa", "textvqa_val", "ai2d", "chartqa", "realworldqa")),
    "smolvlm": ("HuggingFaceTB/SmolVLM-Instruct", ("mmmu", "docvqa", "textvqa_val", "ai2d", "chartqa", "mmstar")),
}  # fmt: skip
FAMILIES.update({
    name: {"model": model, "conv_template": None, "benchmarks": benchmarks, "table": benchmarks, "model_args": {}}
    for name, (model, benchmarks) in CHAT_FAMILIES.items()
})  # fmt: skip


def table_order() -> list[str]:
    """Column order across all families: the paper's, then the rest."""
    order: list[str] = []
    for family in FAMILIES.values():
        order += [name for name in family["table"] + family["benchmarks"] if name not in order]
    return order
