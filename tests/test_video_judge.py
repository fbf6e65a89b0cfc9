"""Video QA tasks: frames, data files, and the GPT-judge path against a stand-in judge on loopback."""

import importlib.util
import json
import threading
import time
from argparse import Namespace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from eval import judge, tables, video_data
from eval.plugin.media import sample_frames

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-test-key-read-at-run-time"


def video_task_utils():
    spec = importlib.util.spec_from_file_location("video_utils", REPO / "eval/tasks/paper/video/utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StandInJudge(BaseHTTPRequestHandler):
    """An OpenAI-style chat-completions endpoint: 'yes' (score 4) when the answer appears in the prediction."""

    calls: list = []
    flaky: set = set()  # questions answered with garbage first, then properly
    broken: set = set()  # questions that always fail
    unsure: set = set()  # questions always answered with a pred that is neither yes nor no

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["messages"][1]["content"]
        question = user.split("Question: ")[1].split("\n")[0]
        answer = user.split("Correct Answer: ")[1].split("\n")[0]
        pred = user.split("Predicted Answer: ")[1].split("\n")[0]
        type(self).calls.append((self.headers["Authorization"], body["model"], question))
        if question in self.broken:
            self.send_response(500)
            self.end_headers()
            return
        if question in self.flaky:
            self.flaky.discard(question)
            reply = "I think it matches."
        elif question in self.unsure:
            reply = str({"pred": "unknown", "score": 3})
        else:
            reply = str({"pred": "yes", "score": 4}) if answer in pred else str({"pred": "no", "score": 1})
        payload = json.dumps({"model": body["model"] + "-0001", "choices": [{"message": {"content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    StandInJudge.calls, StandInJudge.flaky, StandInJudge.broken, StandInJudge.unsure = [], set(), set(), set()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
    server.shutdown()


def write_predictions(folder: Path, docs, preds):
    utils = video_task_utils()
    records = [utils.process_results(doc, [pred])["predictions"] for doc, pred in zip(docs, preds)]
    assert utils.aggregate_predictions(records, Namespace(output_path=str(folder))) == len(docs)
    assert utils.doc_to_visual(docs[0]) == [docs[0]["video"]] and utils.doc_to_text(docs[0]) == docs[0]["question"]


DOCS = [{"question_id": f"q{i}", "question": f"what is the man doing {i}", "answer": answer, "video": f"/v/{i}.mp4"}
        for i, answer in enumerate(["dance", "sing", "run", "cook"])]  # fmt: skip
PREDS = ["He is going to dance.", "He runs.", "running fast", "cooking"]


@pytest.fixture
def waits(monkeypatch) -> list:
    """The back-off waits between attempts, recorded instead of slept (tenacity sleeps with time.sleep)."""
    recorded = []
    monkeypatch.setattr(time, "sleep", recorded.append)
    return recorded


def test_judge_scores_like_video_llava_and_resumes(endpoint, tmp_path, monkeypatch, waits):
    monkeypatch.setenv("MY_JUDGE_KEY", KEY)
    write_predictions(tmp_path, DOCS, PREDS)
    StandInJudge.flaky = {DOCS[1]["question"]}
    config = judge.JudgeConfig(model="judge-x", endpoint=endpoint, key_env="MY_JUDGE_KEY", retries=3, workers=2)
    summary = judge.judge_folder(tmp_path, config)
    assert (summary["judged"], summary["failed"]) == (4, 0)
    assert summary["accuracy"] == pytest.approx(100 * 3 / 4) and summary["score"] == pytest.approx((4 + 1 + 4 + 4) / 4)
    assert summary["judge_models_reported"] == ["judge-x-0001"]
    assert {auth for auth, _, _ in StandInJudge.calls} == {f"Bearer {KEY}"} and len(StandInJudge.calls) == 5
    assert waits == [judge.FIRST_WAIT_S]  # the reply without a verdict was asked again, once, after the first wait
    saved = (tmp_path / judge.JUDGED).read_text()
    assert KEY not in saved and KEY not in (tmp_path / judge.LOG).read_text()
    calls = len(StandInJudge.calls)
    assert judge.judge_folder(tmp_path, config)["accuracy"] == summary["accuracy"]
    assert len(StandInJudge.calls) == calls  # everything came from the judge log


def test_unjudgeable_questions_are_reported_not_scored_as_no(endpoint, tmp_path, monkeypatch, capsys, waits):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    write_predictions(tmp_path, DOCS, PREDS)
    StandInJudge.broken = {DOCS[0]["question"]}
    code = judge.main([str(tmp_path), "--judge-endpoint", endpoint, "--judge-model", "judge-y"])
    summary = json.loads((tmp_path / judge.JUDGED).read_text())
    attempts = judge.JudgeConfig().retries
    assert [q for _, _, q in StandInJudge.calls].count(DOCS[0]["question"]) == attempts
    assert waits == [min(judge.FIRST_WAIT_S * 2**i, judge.MAX_WAIT_S) for i in range(attempts - 1)]  # 1, 2, 4, 8 s
    log = [json.loads(line) for line in (tmp_path / judge.LOG).read_text().splitlines()]
    errors = [entry["error"] for entry in log if "error" in entry]
    assert len(errors) == 1 and errors[0].startswith("HTTPError: 500") and KEY not in errors[0]
    assert code == 1 and (summary["judged"], summary["failed"]) == (3, 1)
    assert summary["accuracy"] == pytest.approx(100 * 2 / 3)
    assert "could not be judged" in capsys.readouterr().out


def test_a_missing_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    write_predictions(tmp_path, DOCS[:1], PREDS[:1])
    with pytest.raises(SystemExit, match="set the environment variable OPENAI_API_KEY"):
        judge.judge_folder(tmp_path, judge.JudgeConfig(endpoint="http://127.0.0.1:9/none"))
    with pytest.raises(ValueError, match="retries >= 1"):
        judge.JudgeConfig(retries=0)


def test_verdict_parsing():
    assert judge.parse_verdict("Sure: {'pred': 'yes', 'score': 4}") == ("yes", 4.0)
    assert judge.parse_verdict(str({"pred": "No", "score": 0})) == ("no", 0.0)
    assert judge.parse_verdict(str({"pred": " 'No, it is not.'", "score": 1})) == ("no", 1.0)
    with pytest.raises(ValueError):
        judge.parse_verdict("no dict here")


@pytest.mark.parametrize("pred", ["unknown", "not sure", "none", "nope", "I cannot tell", "", "maybe yes", "nos"])
def test_a_pred_that_is_not_the_word_yes_or_no_is_unparsed_never_no(pred):
    with pytest.raises(judge.UnparsedVerdict):
        judge.parse_verdict(str({"pred": pred, "score": 2}))


def test_unparsed_replies_are_counted_apart_and_not_asked_again(endpoint, tmp_path, monkeypatch, capsys, waits):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    write_predictions(tmp_path, DOCS, PREDS)
    StandInJudge.unsure = {DOCS[2]["question"]}
    assert judge.main([str(tmp_path), "--judge-endpoint", endpoint]) == 0
    summary = json.loads((tmp_path / judge.JUDGED).read_text())
    assert (summary["judged"], summary["unparsed"], summary["failed"]) == (3, 1, 0)
    assert summary["accuracy"] == pytest.approx(100 * 2 / 3)  # 'unknown' is not a "no"
    assert "1 replies held no yes/no verdict (unparsed)" in capsys.readouterr().out
    assert [q for _, _, q in StandInJudge.calls].count(DOCS[2]["question"]) == judge.JudgeConfig().retries
    calls = len(StandInJudge.calls)
    assert judge.main([str(tmp_path), "--judge-endpoint", endpoint]) == 0 and len(StandInJudge.calls) == calls


@pytest.mark.parametrize("endpoint, allowed", [
    ("https://api.openai.com/v1/chat/completions", True), ("http://localhost:8000/v1", True),
    ("http://127.0.0.1:9/v1", True), ("http://[::1]:9/v1", True), ("http://api.example.com/v1", False),
    ("http://10.0.0.5/v1", False), ("ftp://example.com/x", False), ("api.openai.com/v1", False),
])  # fmt: skip
def test_the_key_goes_only_over_https_or_to_this_machine(endpoint, allowed):
    if allowed:
        judge.JudgeConfig(endpoint=endpoint)
    else:
        with pytest.raises(ValueError, match="--judge-endpoint"):
            judge.JudgeConfig(endpoint=endpoint)
    assert "{'pred': 'yes', 'score': 4.8}" in judge.USER_PROMPT.format(question="q", answer="a", pred="p")


def test_video_table_averages_accuracy_and_score(tmp_path):
    for bench, (acc, score) in {"msvd": (70.0, 3.9), "msrvtt": (57.0, 3.5), "tgif": (20.0, 2.5)}.items():
        folder = (
            tmp_path
            / "Video-LLaVA-7B-hf"
            / "vispruner"
            / "n455_r0.5+frame_cls=false+video_split=even+video_token_num=455"
            / bench
        )
        folder.mkdir(parents=True)
        (folder / "benchmark.json").write_text(json.dumps(tables.BENCHMARKS[bench].describe()))
        (folder / judge.JUDGED).write_text(json.dumps({"accuracy": acc, "score": score, "judge_model": "j"}))
    [table] = tables.build(tmp_path, paper=True)
    assert table.columns == ["TGIF Acc", "TGIF Score", "MSVD Acc", "MSVD Score", "MSRVTT Acc", "MSRVTT Score"]
    ours, reported = table.lines
    assert ours.summary == {"Avg Acc": pytest.approx(49.0), "Avg Score": pytest.approx(3.3)}
    assert reported.paper and reported.values["MSVD Acc"] == 70.2 and reported.summary["Avg Acc"] == 48.4


def test_frames_are_sampled_uniformly(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 12, dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    frames = sample_frames(str(path), 4)
    assert frames.shape == (4, 32, 32, 3)
    brightness = frames.reshape(4, -1).mean(1)
    expected = np.array([0, 6, 12, 19]) * 12  # np.linspace(0, 19, 4, dtype=int): llava.video.sample_indices
    assert np.allclose(brightness, expected, atol=6)
    assert sample_frames(str(path), 30).shape[0] == 30  # fewer frames than asked: repeats


def test_video_data_joins_questions_answers_and_videos(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "v_abc.mp4").write_bytes(b"")
    (videos / "xyz.avi").write_bytes(b"")
    questions = [
        {"video_name": "abc", "question": "what?", "question_id": 1},
        {"video_name": "xyz", "question": "who?", "question_id": 2},
    ]
    answers = [{"answer": "a", "type": 0, "question_id": 1}, {"answer": "b", "type": 1, "question_id": 2}]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "a.json").write_text(json.dumps(answers))
    out = tmp_path / "msvd_qa.jsonl"
    video_data.main(["msvd", "--questions", str(tmp_path / "q.json"), "--answers", str(tmp_path / "a.json"),
                     "--videos", str(videos), "--out", str(out)])  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["question_id"], r["answer"], Path(r["video"]).name) for r in rows] == [
        ("1", "a", "v_abc.mp4"),
        ("2", "b", "xyz.avi"),
    ]
    with pytest.raises(SystemExit) as refused:
        video_data.main(["msvd", "--questions", str(tmp_path / "q.json"), "--answers", str(tmp_path / "a.json"),
                         "--videos", str(videos), "--out", str(out)])  # fmt: skip
    assert refused.value.code == 2 and "exists" in capsys.readouterr().err
