"""The Video-LLaVA GPT-assisted judge for open-ended video QA (MSVD-QA, MSRVTT-QA, TGIF-QA, ActivityNet-QA).

    python -m eval.judge results/Video-LLaVA-7B-hf/vispruner/n57_r0.5/msvd \\
        --judge-model gpt-3.5-turbo --judge-endpoint https://api.openai.com/v1/chat/completions

Each prediction is sent with the judge prompt Video-LLaVA (and Video-ChatGPT before it) uses; the
reply is a Python dict {'pred': 'yes'|'no', 'score': 0-5}. Accuracy = yes / (yes + no), Score = the
mean score, as Video-LLaVA reports them. Any OpenAI-compatible chat-completions endpoint works; the
key is read when the judge runs, from the environment variable named by --judge-key-env or from
--judge-key-file, and is never written anywhere. Replies are logged per question in judge_log.jsonl,
so an interrupted run resumes; questions the judge could not answer are reported, never scored as "no".
Requests go through `requests`, attempts and back-off through `tenacity`. lmms-eval's own judge
providers are not used: they take the endpoint and key from environment variables only (and load a
.env file), retry at a fixed delay and only on transport errors, not on a reply without a verdict.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from tqdm import tqdm

PREDICTIONS = "videoqa_predictions.json"
JUDGED = "judged.json"
LOG = "judge_log.jsonl"
FIRST_WAIT_S, MAX_WAIT_S = 1, 30  # back-off between attempts: 1, 2, 4, ... seconds, at most 30
# What another attempt can fix: the transport or the server (requests' errors: connection, timeout, HTTP
# status, a body that is not JSON) and a reply that holds no verdict (the judge is asked again).
RETRYABLE = (requests.RequestException, KeyError, IndexError, TypeError, ValueError, SyntaxError)

# The judge prompt is protocol: Video-LLaVA's eval_gpt_qa.py wording, reproduced so scores compare.
SYSTEM_PROMPT = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for question-answer pairs. "
    "Your task is to compare the predicted answer with the correct answer and determine if they match meaningfully. "
    "Here's how you can accomplish the task:"
    "------"
    "##INSTRUCTIONS: "
    "- Focus on the meaningful match between the predicted answer and the correct answer.\n"
    "- Consider synonyms or paraphrases as valid matches.\n"
    "- Evaluate the correctness of the prediction compared to the answer."
)
USER_PROMPT = (
    "Please evaluate the following video-based question-answer pair:\n\n"
    "Question: {question}\n"
    "Correct Answer: {answer}\n"
    "Predicted Answer: {pred}\n\n"
    "Provide your evaluation only as a yes/no and score where the score is an integer value between 0 and 5, "
    "with 5 indicating the highest meaningful match. "
    "Please generate the response in the form of a Python dictionary string with keys 'pred' and 'score', "
    "where value of 'pred' is  a string of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING."
    "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. "
    "For example, your response should look like this: {{'pred': 'yes', 'score': 4.8}}."
)


@dataclass(frozen=True)
class JudgeConfig:
    model: str = "gpt-3.5-turbo"
    endpoint: str = "https://api.openai.com/v1/chat/completions"
    key_env: str = "OPENAI_API_KEY"
    key_file: str | None = None
    retries: int = 5  # attempts per question
    timeout: float = 60.0
    workers: int = 8

    def __post_init__(self):
        if self.retries < 1 or self.workers < 1 or self.timeout <= 0:
            raise ValueError(
                f"need retries >= 1, workers >= 1, timeout > 0; got {self.retries}, {self.workers}, {self.timeout}"
            )

    def key(self) -> str:
        """The API key, read now (never stored in results or logs)."""
        if self.key_file:
            return Path(self.key_file).read_text().strip()
        key = os.environ.get(self.key_env)
        if not key:
            raise SystemExit(f"no judge API key: set the environment variable {self.key_env} or pass --judge-key-file")
        return key


def parse_verdict(reply: str) -> tuple[str, float]:
    """('yes'|'no', score) from a reply holding a Python dict; ValueError if it holds none."""
    if "{" not in reply or "}" not in reply:
        raise ValueError(f"no dict in judge reply {reply!r}")
    verdict = ast.literal_eval("{" + reply.split("{", 1)[1].split("}", 1)[0] + "}")
    pred = str(verdict["pred"]).lower()
    if "yes" not in pred and "no" not in pred:
        raise ValueError(f"judge reply has pred={verdict['pred']!r}, not yes/no")
    return ("yes" if "yes" in pred else "no"), float(verdict["score"])


def ask(config: JudgeConfig, key: str, item: dict) -> dict:
    """One judged prediction: {question_id, pred, score, judge_model} or {question_id, error}."""
    body = {
        "model": config.model,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                     {"role": "user", "content": USER_PROMPT.format(**item)}],
        "temperature": 0,
    }  # fmt: skip

    def attempt() -> dict:
        response = requests.post(config.endpoint, json=body, headers={"Authorization": f"Bearer {key}"},
                                 timeout=config.timeout)  # fmt: skip
        response.raise_for_status()
        payload = response.json()
        reply = payload["choices"][0]["message"]["content"]
        verdict, score = parse_verdict(reply)
        return {"question_id": item["question_id"], "verdict": verdict, "score": score, "reply": reply,
                "judge_model": payload.get("model", config.model)}  # fmt: skip

    attempts = Retrying(
        stop=stop_after_attempt(config.retries),
        wait=wait_exponential(multiplier=FIRST_WAIT_S, max=MAX_WAIT_S),
        retry=retry_if_exception_type(RETRYABLE),
        reraise=True,  # the last attempt's own error, not tenacity's RetryError, names what went wrong
    )
    try:
        return attempts(attempt)
    except RETRYABLE as exc:  # every attempt failed: reported as unjudged, never scored
        return {"question_id": item["question_id"], "error": f"{type(exc).__name__}: {exc}"}


def judge_folder(folder: str | Path, config: JudgeConfig) -> dict:
    """Judge `folder`'s predictions (resuming from its judge log) and write judged.json; returns it."""
    folder = Path(folder)
    found = sorted(folder.rglob(PREDICTIONS))
    if not found:
        raise SystemExit(f"{folder}: no {PREDICTIONS}; run the benchmark first")
    items = json.loads(found[-1].read_text())
    log_path = folder / LOG
    done = {}
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("judge") == config.model and "error" not in entry:
                done[(entry["question_id"], entry["pred"])] = entry
    todo = [item for item in items if (item["question_id"], item["pred"]) not in done]
    if todo:
        key = config.key()
        with log_path.open("a") as log, ThreadPoolExecutor(config.workers) as pool:
            answers = pool.map(lambda i: ask(config, key, i), todo)
            for item, result in zip(todo, tqdm(answers, total=len(todo), desc="judging")):
                entry = {**result, "pred": item["pred"], "judge": config.model}
                log.write(json.dumps(entry) + "\n")
                log.flush()
                if "error" not in entry:
                    done[(item["question_id"], item["pred"])] = entry
    verdicts = [done[(i["question_id"], i["pred"])] for i in items if (i["question_id"], i["pred"]) in done]
    yes = sum(v["verdict"] == "yes" for v in verdicts)
    summary = {
        "predictions": str(found[-1]),
        "questions": len(items),
        "judged": len(verdicts),
        "failed": len(items) - len(verdicts),
        "accuracy": 100.0 * yes / len(verdicts) if verdicts else None,
        "score": sum(v["score"] for v in verdicts) / len(verdicts) if verdicts else None,
        "judge_model": config.model,
        "judge_models_reported": sorted({v["judge_model"] for v in verdicts}),
        "endpoint": config.endpoint,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (folder / JUDGED).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = JudgeConfig()
    parser.add_argument("--judge-model", default=defaults.model, help=f"judge model name (default {defaults.model})")
    parser.add_argument("--judge-endpoint", default=defaults.endpoint, help="OpenAI-compatible chat-completions URL")
    parser.add_argument(
        "--judge-key-env", default=defaults.key_env, help=f"variable holding the key (default {defaults.key_env})"
    )
    parser.add_argument("--judge-key-file", help="file holding the key (instead of the variable)")
    parser.add_argument("--judge-workers", type=int, default=defaults.workers, help="parallel requests (default 8)")


def config_from(args: argparse.Namespace) -> JudgeConfig:
    return JudgeConfig(model=args.judge_model, endpoint=args.judge_endpoint, key_env=args.judge_key_env,
                       key_file=args.judge_key_file, workers=args.judge_workers)  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "folder", help="a video benchmark's results folder (holding submissions/videoqa_predictions.json)"
    )
    add_judge_arguments(parser)
    args = parser.parse_args(argv)
    summary = judge_folder(args.folder, config_from(args))
    print(json.dumps(summary, indent=2))
    if summary["failed"]:
        print(f"{summary['failed']} questions could not be judged; run again to retry them")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
