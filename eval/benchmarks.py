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


def table_order() -> list[str]:
    """Column order across all families: the paper's, then the rest."""
    order: list[str] = []
    for family in FAMILIES.values():
        order += [name for name in family["table"] + family["benchmarks"] if name not in order]
    return order
