"""Direct evaluation on Scenette: a model, its processor and question rows -> accuracy per type.

The fast path beside lmms-eval: same rows, same prompt text, same scoring function
(`prompt.score_answer`), batched greedy generation. Works on a model with
`llava.apply_pruning(...)` applied, since it only calls `processor(...)` and `model.generate(...)`.

    python -m llava.scenette.evaluate                                # shipped model, unpruned
    python -m llava.scenette.evaluate --method vispruner --tokens 128 64 32 16 --output results/scenette/vispruner.json
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from .data import doc_image, eval_rows, subset
from .prompt import conversation, score_answer
from .questions import QUESTION_TYPES


def predict(model, processor, rows: list[dict], batch_size: int = 16, max_new_tokens: int = 6, progress: bool = True) -> list[str]:
    """The model's answer to each row (greedy, special tokens dropped, outer spaces stripped)."""
    answers: list[str] = []
    batches = range(0, len(rows), batch_size)
    for start in tqdm(batches, desc="scenette", disable=not progress, dynamic_ncols=True):
        chunk = rows[start : start + batch_size]
        inputs = processor(
            text=[conversation(row["prompt"]) for row in chunk],
            images=[doc_image(row) for row in chunk],
            padding=True,
            return_tensors="pt",
        )
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        answers += [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


def summarize(rows: list[dict], answers: list[str]) -> dict:
    """Accuracy per type, per type/category, and the mean over the types present."""
    per_type, per_category = defaultdict(list), defaultdict(list)
    for row, answer in zip(rows, answers):
        score = score_answer(answer, row["answer"])
        per_type[row["type"]].append(score)
        per_category[f"{row['type']}/{row['category']}"].append(score)
    types = [t for t in QUESTION_TYPES if t in per_type]
    accuracy = {t: 100 * sum(per_type[t]) / len(per_type[t]) for t in types}
    return {
        "accuracy": accuracy,
        "mean": sum(accuracy.values()) / len(accuracy) if accuracy else float("nan"),
        "by_category": {k: 100 * sum(v) / len(v) for k, v in sorted(per_category.items())},
        "questions": {t: len(per_type[t]) for t in types},
    }


def evaluate(model, processor, rows: list[dict] | None = None, batch_size: int = 16, progress: bool = True) -> dict:
    """`summarize` of the model's answers on `rows` (default: every fixed evaluation question)."""
    rows = eval_rows() if rows is None else rows
    return summarize(rows, predict(model, processor, rows, batch_size, progress=progress))


def run(args: argparse.Namespace) -> dict:
    import llava
    from llava.bench.hardware import describe

    from .model import load_default

    torch.set_num_threads(args.threads) if args.threads else None
    model, processor = load_default(args.model)
    rows = eval_rows()
    if args.per_type:
        rows = subset(rows, args.per_type)
    settings = [(None, None)] + [(args.method, t) for t in args.tokens] if args.method else [(None, None)]
    report = {"model": str(args.model or "shipped Scenette-LLaVA"), "questions": len(rows), "runs": [], "hardware": describe(torch.device("cpu"))}
    for method, tokens in settings:
        if method is None:
            llava.remove_pruning(model)
        else:
            llava.apply_pruning(model, method=method, visual_token_num=tokens, **dict(args.option or []))
        start = time.perf_counter()
        result = evaluate(model, processor, rows, args.batch_size)
        result.update(method=method or "none", visual_token_num=tokens, seconds=round(time.perf_counter() - start, 1))
        report["runs"].append(result)
        label = f"{method} T={tokens}" if method else "unpruned"
        cells = "  ".join(f"{t} {a:.1f}" for t, a in result["accuracy"].items())
        print(f"{label:>18}: mean {result['mean']:.1f}  |  {cells}  ({result['seconds']} s)")
    llava.remove_pruning(model)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1) + "\n")
        print(f"results: {args.output}")
    return report


def _option(text: str) -> tuple[str, float]:
    key, _, value = text.partition("=")
    if not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, float(value)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a Scenette-LLaVA folder (default: the shipped checkpoint)")
    parser.add_argument("--method", help="a pruning method (see llava.list_methods()); the unpruned model is always run first")
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 64, 32, 16], help="budgets for --method")
    parser.add_argument("--option", type=_option, action="append", help="method option KEY=VALUE, e.g. important_ratio=0.5")
    parser.add_argument("--per-type", type=int, default=0, help="only the first N questions of each type (default: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--output", type=Path, help="write the results as JSON (an existing file is not overwritten)")
    parser.add_argument("--overwrite", action="store_true", help="allow replacing --output")
    args = parser.parse_args(argv)
    if args.output and args.output.exists() and not args.overwrite:
        parser.error(f"--output {args.output} exists; pass --overwrite to replace it")
    if args.method:
        import llava

        if args.method not in llava.list_methods():
            parser.error(f"--method {args.method!r} is not registered; available: {', '.join(llava.list_methods())}")
    return args


def main(argv=None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
