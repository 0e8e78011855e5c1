"""The openai backend: retries/backoff and errors against a scripted local HTTP server,
then the real thing against `vllm serve` of the embedded model (slow)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loop.config import load_config
from loop.prompts import messages
from loop.samplers import SamplerError, SamplingParams, build_sampler
from tests import sampler_checks as checks

MODELS = {"object": "list", "data": [{"id": "teacher", "object": "model"}]}


def chat_body(n: int, text: str = "4") -> dict:
    return {"choices": [{"index": k, "message": {"role": "assistant", "content": f"{text}{k}"},
                         "finish_reason": "stop"} for k in range(n)],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3 * n}}


class Script:
    """Responses per path, in order; the last one repeats. A response is
    (status, body, headers) or ("sleep", seconds) to stall before answering."""

    def __init__(self, **paths):
        self.paths = {k.replace("_", "/"): list(v) for k, v in paths.items()}
        self.requests: list[tuple[str, dict, dict]] = []


@pytest.fixture
def server():
    scripts: list[Script] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _serve(self):
            script = scripts[0]
            n = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(n)) if n else {}
            script.requests.append((self.path, payload, dict(self.headers)))
            queue = script.paths.get(self.path.removeprefix("/v1/"), [(404, {"error": "no route"}, {})])
            step = queue.pop(0) if len(queue) > 1 else queue[0]
            if step[0] == "sleep":
                time.sleep(step[1])
                step = queue.pop(0) if len(queue) > 1 else queue[0]
            status, body, headers = step
            data = json.dumps(body).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def start(script: Script, **openai) -> tuple[object, Script]:
        scripts.append(script)
        sets = [f"sample.openai.base_url=http://127.0.0.1:{httpd.server_port}/v1",
                "sample.openai.backoff_s=0.01"] + [f"sample.openai.{k}={v}" for k, v in openai.items()]
        cfg = load_config(None, sets)
        return build_sampler("openai", None, None, cfg.sample, cfg.model), script

    yield start
    httpd.shutdown()
    httpd.server_close()


def ok_models():
    return [(200, MODELS, {})]


def test_group_is_one_request_with_n_and_seed(server):
    s, script = server(Script(models=ok_models(), chat_completions=[(200, chat_body(3), {})]))
    calls = []
    out = s.generate([messages("What is 2+2?"), messages("What is 3+3?")],
                     SamplingParams(n=3, max_new_tokens=20, seed=7, stop=["</answer>"]), calls.append)
    assert s.model == "teacher" and [len(g) for g in out] == [3, 3] and sum(calls) == 6
    assert [c.text for c in out[0]] == ["40", "41", "42"]
    assert all(c.prompt_tokens == 12 and c.finish_reason == "stop" for g in out for c in g)
    assert sum(c.completion_tokens for c in out[0]) == 9 and out[0][0].meta == {"tokens_estimated": True}
    posts = [p for path, p, _ in script.requests if path.endswith("/chat/completions")]
    assert len(posts) == 2  # one request per group
    assert posts[0]["n"] == 3 and posts[0]["max_tokens"] == 20 and posts[0]["stop"] == ["</answer>"]
    assert posts[0]["seed"] != posts[1]["seed"]
    assert posts[0]["messages"][-1] == {"role": "user", "content": "What is 2+2?"}


def test_429_and_500_are_retried_with_exponential_backoff(server):
    s, _ = server(Script(models=ok_models(), chat_completions=[
        (429, {"error": "slow down"}, {}), (500, {"error": "boom"}, {}), (200, chat_body(1), {})]))
    c = s.generate([messages("q")], SamplingParams(n=1))[0][0]
    assert c.text == "40"
    r = c.meta["retries"]
    assert [x["attempt"] for x in r] == [1, 2] and [x["wait_s"] for x in r] == [0.01, 0.02]
    assert "HTTP 429" in r[0]["error"] and "slow down" in r[0]["error"] and "HTTP 500" in r[1]["error"]


def test_retry_after_header_is_honoured(server):
    s, _ = server(Script(models=ok_models(), chat_completions=[
        (429, {}, {"Retry-After": "0.3"}), (200, chat_body(1), {})]))
    t0 = time.perf_counter()
    c = s.generate([messages("q")], SamplingParams(n=1))[0][0]
    assert c.meta["retries"][0]["wait_s"] == 0.3 and time.perf_counter() - t0 >= 0.3


def test_timeout_is_retried(server):
    s, _ = server(Script(models=ok_models(), chat_completions=[("sleep", 1.0), (200, chat_body(1), {})]),
                  timeout_s=0.3)
    c = s.generate([messages("q")], SamplingParams(n=1))[0][0]
    assert c.text == "40" and "timeout" in c.meta["retries"][0]["error"]


def test_retries_run_out(server):
    s, script = server(Script(models=ok_models(), chat_completions=[(503, {"error": "down"}, {})]),
                       max_retries=2)
    with pytest.raises(SamplerError, match="failed after 3 attempt"):
        s.generate([messages("q")], SamplingParams(n=1))
    assert sum(path.endswith("/chat/completions") for path, _, _ in script.requests) == 3


def test_client_errors_are_not_retried(server):
    s, script = server(Script(models=ok_models(), chat_completions=[(400, {"error": "bad n"}, {})]))
    with pytest.raises(SamplerError, match="HTTP 400.*bad n"):
        s.generate([messages("q")], SamplingParams(n=1))
    assert sum(path.endswith("/chat/completions") for path, _, _ in script.requests) == 1


def test_api_key_from_the_named_env_var(server, monkeypatch):
    monkeypatch.setenv("LOOP_TEST_KEY", "sk-test")
    s, script = server(Script(models=ok_models()), api_key_env="LOOP_TEST_KEY")
    assert script.requests[0][2].get("Authorization") == "Bearer sk-test"


def test_model_not_served_is_an_error_at_construction(server):
    with pytest.raises(SamplerError, match="'student' is not served.*teacher"):
        server(Script(models=ok_models()), model="student")


def test_budget_forcing_is_refused_at_construction():
    cfg = load_config(None, ["sample.budget.waits=1"])
    with pytest.raises(SamplerError, match="budget forcing"):
        build_sampler("openai", None, None, cfg.sample, cfg.model)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_is_an_error_at_construction():
    cfg = load_config(None, [f"sample.openai.base_url=http://127.0.0.1:{free_port()}/v1",
                             "sample.openai.max_retries=1", "sample.openai.backoff_s=0.01"])
    t0 = time.perf_counter()
    with pytest.raises(SamplerError, match=r"endpoint http://127\.0\.0\.1:\d+/v1 is not usable.*2 attempt"):
        build_sampler("openai", None, None, cfg.sample, cfg.model)
    assert time.perf_counter() - t0 < 5


def test_unknown_backend_is_an_error():
    with pytest.raises(SamplerError, match="unknown sampler backend 'nope'.*hf, openai, vllm"):
        build_sampler("nope", None, None, None, None)


# --- against a real `vllm serve` of the embedded model ----------------------------
@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    pytest.importorskip("vllm")
    from loop.models import resolve_model
    port, log = free_port(), tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(resolve_model(
        "embedded:smollm2-135m-instruct")), "--served-model-name", "smollm2", "--host", "127.0.0.1",
        "--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048",
        "--kv-cache-memory-bytes", str(512 << 20)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        _wait_for(url, proc, log, 240)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(url: str, proc, log, limit_s: float) -> None:
    import urllib.request
    t0 = time.time()
    while time.time() - t0 < limit_s:
        if proc.poll() is not None:
            pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url + "/models", timeout=2).read()
            return
        except OSError:
            time.sleep(1)
    pytest.fail(f"vllm serve not up after {limit_s} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_real_vllm_serve(vllm_server):
    cfg = load_config(None, [f"sample.openai.base_url={vllm_server}"])
    s = build_sampler("openai", None, None, cfg.sample, cfg.model)
    assert s.model == "smollm2"
    p = SamplingParams(n=3, temperature=1.0, max_new_tokens=24, seed=11)
    a = s.generate(checks.QUESTIONS, p)
    assert [len(g) for g in a] == [3, 3] and any(len({c.text for c in g}) > 1 for g in a)
    assert all(c.prompt_tokens > 100 and c.finish_reason in ("stop", "length") for g in a for c in g)
    assert checks.texts(s.generate(checks.QUESTIONS, p)) == checks.texts(a), "seeded: reproducible"
    base = [g[0] for g in s.generate(checks.QUESTIONS, SamplingParams(n=1, temperature=0, max_new_tokens=48))]
    cut = [g[0] for g in s.generate(checks.QUESTIONS, SamplingParams(n=1, temperature=0, max_new_tokens=48,
                                                                      stop=["</reasoning>"]))]
    for b, c in zip(base, cut):
        assert "</reasoning>" in b.text and c.text == b.text.split("</reasoning>")[0]
        assert c.finish_reason == "stop" and c.completion_tokens < b.completion_tokens
