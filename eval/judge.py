"""The Video-LLaVA GPT-assisted judge for open-ended video QA (MSVD-QA, MSRVTT-QA, TGIF-QA, ActivityNet-QA).

    python -m eval.judge results/Video-LLaVA-7B-hf/vispruner/n57_r0.5/msvd \\
        --judge-model gpt-3.5-turbo --judge-endpoint https://api.openai.com/v1/chat/completions

Each prediction is sent with the judge prompt Video-LLaVA (and Video-ChatGPT before it) uses; the
reply is a Python dict {'pred': 'yes'|'no', 'score': 0-5}. Accuracy = yes / (yes + no), Score = the
mean score, as Video-LLaVA reports them. The verdict is the word `yes` or `no` at the start of 'pred'
(case and surrounding quotes, spaces or punctuation aside: "Yes", "no.", "No, it is not"); any other
'pred' ("unknown", "not sure", "none", "nope") is *unparsed*: asked again like a reply without a dict,
and if every attempt gives no verdict, logged and counted as unparsed (reported beside the accuracy,
scored neither yes nor no). Any OpenAI-compatible chat-completions endpoint works, over HTTPS (plain
http:// only to this machine: localhost, 127.0.0.1, ::1, since the key goes with every request); the
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
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from efficiency.command import LOOPBACK, ResultFileError, atomic_write_json, positive_int, read_json, read_jsonl

PREDICTIONS = "videoqa_predictions.json"
JUDGED = "judged.json"
LOG = "judge_log.jsonl"
FIRST_WAIT_S, MAX_WAIT_S = 1, 30  # back-off between attempts: 1, 2, 4, ... seconds, at most 30
# What another attempt can fix: the transport or the server (requests' errors: connection, timeout, HTTP
# status, a body that is not JSON) and a reply that holds no verdict (the judge is asked again).
# requests is imported where a request is made: `--help` and argument errors answer at once.
RETRYABLE_REPLY = (KeyError, IndexError, TypeError, ValueError, SyntaxError)
VERDICT = re.compile(r"""^[\s'"`*(\[]*(yes|no)\b""", re.IGNORECASE)  # the whole word, at the start
UNPARSED = "unparsed"
PREDICTION_KEYS = ("question_id", "question", "answer", "pred")


class UnparsedVerdict(ValueError):
    """A reply whose 'pred' is neither yes nor no (as a whole word at its start)."""

    def __init__(self, reply: str, pred, score):
        super().__init__(f"judge reply has pred={pred!r}, not yes/no")
        self.reply, self.pred, self.score = reply, pred, score


def retryable() -> tuple:
    import requests

    return (requests.RequestException, *RETRYABLE_REPLY)


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
        if self.retries < 1 or self.workers < 1 or not self.timeout > 0:
            raise ValueError(
                f"need retries >= 1, workers >= 1, timeout > 0; got {self.retries}, {self.workers}, {self.timeout}"
            )
        problem = endpoint_problem(self.endpoint)
        if problem:
            raise ValueError(f"--judge-endpoint {self.endpoint}: {problem}")

    def key(self) -> str:
        """The API key, read now (never stored in results or logs)."""
        if self.key_file:
            return Path(self.key_file).read_text().strip()
        key = os.environ.get(self.key_env)
        if not key:
            raise SystemExit(f"no judge API key: set the environment variable {self.key_env} or pass --judge-key-file")
        return key


def endpoint_problem(endpoint: str) -> str | None:
    """Why the key must not be sent to `endpoint` (None: it may): not an http(s) URL with a host, or plain
    http:// to another machine (the key would cross the network unencrypted)."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
    except ValueError:
        return "not a URL; allowed: https://HOST/..., or http:// to localhost, 127.0.0.1 or ::1"
    if parts.scheme not in ("https", "http") or not host:
        return "not an http(s) URL with a host; allowed: https://HOST/..., or http:// to localhost, 127.0.0.1 or ::1"
    if parts.scheme == "http" and host not in LOOPBACK:
        return ("plain http:// would send the API key unencrypted; use https://, or http:// only to "
                "localhost, 127.0.0.1 or ::1")  # fmt: skip
    return None


def parse_verdict(reply: str) -> tuple[str, float]:
    """('yes'|'no', score) from a reply holding a Python dict. The verdict is the whole word yes or no at the
    start of 'pred' (VERDICT); any other 'pred' raises UnparsedVerdict, a reply without such a dict ValueError."""
    if "{" not in reply or "}" not in reply:
        raise ValueError(f"no dict in judge reply {reply!r}")
    verdict = ast.literal_eval("{" + reply.split("{", 1)[1].split("}", 1)[0] + "}")
    if not isinstance(verdict, dict):
        raise ValueError(f"no dict in judge reply {reply!r}")
    score = float(verdict["score"])
    match = VERDICT.match(str(verdict["pred"]))
    if match is None:
        raise UnparsedVerdict(reply, verdict["pred"], score)
    return match.group(1).lower(), score


def ask(config: JudgeConfig, key: str, item: dict) -> dict:
    """One judged prediction: {question_id, verdict: yes|no|unparsed, score, reply, judge_model} or
    {question_id, error} when no attempt got a reply (transport or server errors)."""
    import requests

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

    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    attempts = Retrying(
        stop=stop_after_attempt(config.retries),
        wait=wait_exponential(multiplier=FIRST_WAIT_S, max=MAX_WAIT_S),
        retry=retry_if_exception_type(retryable()),
        reraise=True,  # the last attempt's own error, not tenacity's RetryError, names what went wrong
    )
    try:
        return attempts(attempt)
    except UnparsedVerdict as unparsed:  # a reply every time, never a verdict: counted as unparsed, not as "no"
        return {"question_id": item["question_id"], "verdict": UNPARSED, "score": unparsed.score,
                "reply": unparsed.reply, "judge_model": config.model}  # fmt: skip
    except retryable() as exc:  # every attempt failed: reported as unjudged, never scored
        return {"question_id": item["question_id"], "error": f"{type(exc).__name__}: {exc}"}


def judge_folder(folder: str | Path, config: JudgeConfig) -> dict:
    """Judge `folder`'s predictions (resuming from its judge log) and write judged.json; returns it."""
    from tqdm import tqdm

    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder (a video benchmark's results folder)")
    found = sorted(folder.rglob(PREDICTIONS))
    if not found:
        raise SystemExit(f"{folder}: no {PREDICTIONS}; run the benchmark first")
    items = read_predictions(found[-1])
    log_path = folder / LOG
    done = {}
    if log_path.exists():
        for entry in read_jsonl(log_path, "the judge's log"):
            if entry.get("judge") == config.model and "error" not in entry and "verdict" in entry:
                done[(entry.get("question_id"), entry.get("pred"))] = entry
    todo = [item for item in items if (item["question_id"], item["pred"]) not in done]
    if todo:
        key = config.key()
        if log_path.exists() and log_path.stat().st_size and not log_path.read_bytes().endswith(b"\n"):
            with log_path.open("a") as log:  # a line cut short by a crash stays apart from the next one
                log.write("\n")
        with log_path.open("a") as log, ThreadPoolExecutor(config.workers) as pool:
            answers = pool.map(lambda i: ask(config, key, i), todo)
            for item, result in zip(todo, tqdm(answers, total=len(todo), desc="judging")):
                entry = {**result, "pred": item["pred"], "judge": config.model}
                log.write(json.dumps(entry) + "\n")
                log.flush()
                if "error" not in entry:
                    done[(item["question_id"], item["pred"])] = entry
    answered = [done[(i["question_id"], i["pred"])] for i in items if (i["question_id"], i["pred"]) in done]
    verdicts = [v for v in answered if v["verdict"] in ("yes", "no")]
    yes = sum(v["verdict"] == "yes" for v in verdicts)
    summary = {
        "predictions": str(found[-1]),
        "questions": len(items),
        "judged": len(verdicts),
        "unparsed": len(answered) - len(verdicts),  # replies without a yes/no verdict: in neither count
        "failed": len(items) - len(answered),
        "accuracy": 100.0 * yes / len(verdicts) if verdicts else None,
        "score": sum(v["score"] for v in verdicts) / len(verdicts) if verdicts else None,
        "judge_model": config.model,
        "judge_models_reported": sorted({v["judge_model"] for v in answered}),
        "endpoint": config.endpoint,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(folder / JUDGED, summary)
    return summary


def read_predictions(path: Path) -> list[dict]:
    """The predictions file the video tasks write: a list of {question_id, question, answer, pred}."""
    items = read_json(path, what="the video predictions (a list)", kind=list)
    for number, item in enumerate(items):
        missing = [key for key in PREDICTION_KEYS if not isinstance(item, dict) or key not in item]
        if missing:
            raise ResultFileError(f"{path}: entry {number} has no {', '.join(missing)}; not a predictions file "
                                  "of the video tasks; it is left as it is")  # fmt: skip
    return items


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = JudgeConfig()
    parser.add_argument("--judge-model", default=defaults.model, help=f"judge model name (default {defaults.model})")
    parser.add_argument("--judge-endpoint", default=defaults.endpoint, help="OpenAI-compatible chat-completions URL")
    parser.add_argument(
        "--judge-key-env", default=defaults.key_env, help=f"variable holding the key (default {defaults.key_env})"
    )
    parser.add_argument("--judge-key-file", help="file holding the key (instead of the variable)")
    parser.add_argument(
        "--judge-workers", type=positive_int, default=defaults.workers, help="parallel requests (default 8)"
    )


def config_from(args: argparse.Namespace) -> JudgeConfig:
    return JudgeConfig(model=args.judge_model, endpoint=args.judge_endpoint, key_env=args.judge_key_env,
                       key_file=args.judge_key_file, workers=args.judge_workers)  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.judge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "folder", help="a video benchmark's results folder (holding submissions/videoqa_predictions.json)"
    )
    add_judge_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from(args)
    except ValueError as error:
        parser.error(str(error))
    if args.judge_key_file and not Path(args.judge_key_file).is_file():
        parser.error(f"--judge-key-file: {args.judge_key_file} does not exist")
    if not Path(args.folder).is_dir():
        parser.error(f"folder: {args.folder} is not a folder (a video benchmark's results folder)")
    try:
        summary = judge_folder(args.folder, config)
    except ResultFileError as error:
        raise SystemExit(str(error)) from None
    print(json.dumps(summary, indent=2))
    if summary["unparsed"]:
        print(f"{summary['unparsed']} replies held no yes/no verdict (unparsed): counted neither yes nor no")
    if summary["failed"]:
        print(f"{summary['failed']} questions could not be judged; run again to retry them")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
