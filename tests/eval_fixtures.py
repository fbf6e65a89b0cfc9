"""A tiny original-layout LLaVA checkpoint and a local lmms-eval task, for the evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

from llava.testing import build_tiny_llava
from original_layout import llava_next_like, save_clip, save_original
from support import shapes_image

TASK = "vispruner_smoke"
DEFAULT_POST = "\nAnswer briefly."
LLAVA_POST = "\nAnswer the question using a single word or phrase."
LLAVA_MAX_NEW_TOKENS = 3

TASK_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 6
  temperature: 0
  do_sample: false
  until: ["ASSISTANT:"]
lmms_eval_specific_kwargs:
  default:
    post_prompt: {default_post}
  llava:
    post_prompt: {llava_post}
model_specific_generation_kwargs:
  llava:
    max_new_tokens: {llava_max}
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
  - metric: answer_length
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0.0
"""

TASK_UTILS = """from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image_path"]).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"] + (lmms_eval_specific_kwargs or {}).get("post_prompt", "")


def process_results(doc, results):
    answer = results[0].strip()
    return {"exact_match": float(answer.lower() == doc["answer"]), "answer_length": float(len(answer))}
"""


def write_checkpoint(folder: Path) -> Path:
    model, processor = build_tiny_llava(image_size=56, patch_size=14, vision_layers=2)
    clip = save_clip(model, folder / "clip", 56)
    return save_original(model, processor.tokenizer, folder / "llava-tiny", clip)


def write_next_checkpoint(folder: Path) -> Path:
    """A tiny LLaVA-1.6 (anyres) checkpoint in the original layout, 56-px tiles."""
    model, processor = build_tiny_llava(image_size=56, patch_size=14, vision_layers=2)
    clip = save_clip(model, folder / "clip", 56)
    pinpoints = [[56, 112], [112, 56], [112, 112]]
    return save_original(llava_next_like(model, pinpoints), processor.tokenizer, folder / "llava-next-tiny", clip,
                         aspect="anyres", pinpoints=pinpoints)  # fmt: skip


def write_task(folder: Path, num_docs: int = 5) -> Path:
    """A local image QA task whose prompts and generation options are keyed by model name."""
    rows = []
    for i in range(num_docs):
        image = folder / f"image{i}.png"
        shapes_image(48 + 12 * i, seed=i).save(image)
        rows.append({"question_id": i, "image_path": str(image), "question": f"What is shown {i}?", "answer": "yes"})
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    task_dir = folder / "tasks" / TASK
    task_dir.mkdir(parents=True)
    (task_dir / f"{TASK}.yaml").write_text(
        TASK_YAML.format(
            task=TASK,
            data=data,
            default_post=json.dumps(DEFAULT_POST),
            llava_post=json.dumps(LLAVA_POST),
            llava_max=LLAVA_MAX_NEW_TOKENS,
        )  # fmt: skip
    )
    (task_dir / "utils.py").write_text(TASK_UTILS)
    return folder / "tasks"


FAKE_LMMS_EVAL = '''"""A stand-in for `python -m lmms_eval`; --tasks picks: fake_ok, fake_silent or fake_exit."""
import sys
import time
from pathlib import Path

from tqdm import tqdm

argv = sys.argv[1:]
out, task = Path(argv[argv.index("--output_path") + 1]), argv[argv.index("--tasks") + 1]
if task == "fake_exit":
    sys.exit(3)
if task == "fake_silent":  # what lmms-eval 0.7.3 does after an error: print the traceback, exit 0
    print("Traceback (most recent call last):\\nValueError: Tasks not found: fake_silent")
    sys.exit(0)
for _ in tqdm(range({steps}), desc="fake progress"):  # about a second: ten redraws at tqdm's defaults
    time.sleep({step_s})
(out / "fake").mkdir(parents=True, exist_ok=True)
(out / "fake" / "20260101_000000_results.json").write_text('{{"results": {{}}}}')
'''
FAKE_STEPS, FAKE_STEP_S = 100, 0.01


def write_fake_lmms_eval(folder: Path) -> Path:
    """A folder to put first on PYTHONPATH so that `python -m lmms_eval` runs the stand-in above."""
    package = folder / "fake_lmms_eval" / "lmms_eval"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_LMMS_EVAL.format(steps=FAKE_STEPS, step_s=FAKE_STEP_S))
    return package.parent
