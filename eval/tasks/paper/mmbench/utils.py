"""MMBench-CN dev: lmms-eval's prompts and submission file, scored locally without a GPT model."""

import json

from lmms_eval.tasks._task_utils.file_utils import generate_submission_file
from lmms_eval.tasks.mmbench.cn_utils import (  # noqa: F401
    mmbench_aggregate_dev_results,
    mmbench_doc_to_text,
    mmbench_doc_to_visual,
    mmbench_evaluator,
    mmbench_process_results,
)


def aggregate_static(results, args):
    overall, by_category, by_l2_category = mmbench_evaluator.eval_result(results, eval_method="static")
    with open(generate_submission_file("mmbench_cn_dev_static_results.json", args), "w") as handle:
        json.dump({"overall_acc": overall, "category_acc": by_category, "l2_category_acc": by_l2_category}, handle)
    return overall * 100
