"""Teacher -> student distillation: a teacher endpoint (openai backend) writes the chains,
the verifier keeps the correct ones, SFT trains the local student, and evaluation runs
the student, not the teacher."""
from __future__ import annotations

import ast
import json
import operator
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loop.samplers import eval_backend

OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _calc(node):
    """+, -, * on integer literals only (the teacher's arithmetic; nothing is eval'd)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        return OPS[type(node.op)](_calc(node.left), _calc(node.right))
    raise ValueError("not arithmetic")


def teacher_answer(question: str) -> str:
    expr = max(re.findall(r"[\d\s+\-*()]{3,}", question), key=len).strip()
    value = _calc(ast.parse(expr, mode="eval").body)
    return f"<reasoning>\n{expr} = {value}\n</reasoning>\n<answer>\n{value}\n</answer>\n"


@pytest.fixture
def teacher():
    """A local OpenAI-compatible endpoint serving a 'teacher' that solves the arithmetic."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, body: dict):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send({"object": "list", "data": [{"id": "teacher", "object": "model"}]})

        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = teacher_answer(req["messages"][-1]["content"])
            self._send({"choices": [{"index": k, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"} for k in range(req.get("n", 1))],
                        "usage": {"prompt_tokens": 20, "completion_tokens": 12 * req.get("n", 1)}})

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


@pytest.mark.parametrize("question,expected", [
    ("Calculate 40 + 85.", "125"),                      # a level-1 sum
    ("What is the value of 34 + 70 - 79?", "25"),       # three terms
    ("What is 12 * (3 + 4)?", "84"),                    # brackets
])
def test_teacher_fixture_is_right(question, expected):
    assert f"<answer>\n{expected}\n</answer>" in teacher_answer(question)


@pytest.mark.parametrize("eval_name,sample_name,expected", [
    ("auto", "hf", "hf"),          # the sampler runs the trained model: evaluate with it
    ("auto", "vllm", "vllm"),
    ("hf", "vllm", "hf"),          # an explicit choice wins
    ("auto", "openai", "auto"),    # a teacher samples: the student is evaluated locally (vllm or hf)
])
def test_eval_backend(eval_name, sample_name, expected):
    assert eval_backend(eval_name, sample_name) == expected


@pytest.mark.slow
def test_teacher_chains_distil_into_the_real_student(tmp_path, teacher):
    """One round on the real embedded student: the teacher's verified chains train it by SFT
    (s1-style selection on), and the student's own held-out format rate rises from ~0."""
    from typer.testing import CliRunner

    import cli
    from store.db import Store
    from tests.conftest import ROOT
    res = CliRunner().invoke(cli.app, [
        "start", "--rounds", "1", "-c", str(ROOT / "configs" / "distill.yaml"),
        "--set", f"run.dir={tmp_path / 'run'}", "--set", f"sample.openai.base_url={teacher}",
        "--set", "propose.sources=[{kind: arithmetic, count: 24, levels: [1, 2]}]",
        "--set", "sample.group_size=2", "--set", "train.sft.max_steps=20",
        "--set", "train.sft.select.n=20", "--set", "evaluate.n_problems=24", "--set", "evaluate.max_new_tokens=64"])
    assert res.exit_code == 0, res.output
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        samples = st.query("SELECT DISTINCT backend, model_version, model_parent FROM samples")
        assert samples == [{"backend": "openai", "model_version": "openai:teacher", "model_parent": None}]
        assert st.scalar("SELECT avg(CASE WHEN verified THEN 1.0 ELSE 0 END) FROM samples") == 1.0
        sft = json.loads(st.query("SELECT info FROM steps WHERE stage = 'train.sft'")[0]["info"])
        assert sft["examples"] == 20                                        # the s1-selected subset
        student = st.query("SELECT model_version FROM models WHERE kind = 'lora'")[0]["model_version"]
        ev = {e["round"]: e for e in st.query("SELECT * FROM evaluations ORDER BY round")}
    assert ev[1]["model_version"] == student            # the student was evaluated, not the teacher
    assert ev[0]["format_rate"] <= 0.25 and ev[1]["format_rate"] >= 0.75, ev
