"""OpenAI-compatible chat-completions backend: `vllm serve`, or a hosted teacher.

Contract (see loop.samplers), configured by `sample.openai` (loop.config.OpenAISettings):
- stdlib only (urllib); the key is read from the env var named `api_key_env`
  (unset: no Authorization header, as a local `vllm serve` needs none);
- construction probes `GET {base_url}/models` and raises SamplerError when the
  endpoint cannot be reached or does not serve `model` (None: its first model),
  so a bad endpoint fails before any round starts;
- a group is ONE request with `n = params.n` and `seed = group_seed(seed, prompt
  index)` (servers may ignore the seed: hosted APIs sample non-reproducibly);
- timeouts, connection errors, 429 and 5xx are retried with exponential backoff
  (`backoff_s * 2**k`, at least a Retry-After the server sends, at most 60 s),
  up to `max_retries` times; each retry is recorded in every completion of that
  request as `meta["retries"] = [{"attempt", "error", "wait_s"}]`; other 4xx fail
  at once with the server's message;
- per-choice completion tokens: the API reports only the request's total, so
  with n > 1 it is split by text length (`meta["tokens_estimated"] = True`);
- the served weights are the server's: `set_adapter` only records the folder,
  and samples record `model_version = "openai:<served model>"` (`served_model`);
  the trained local model is evaluated by a local sampler (ctx.eval_sampler);
  budget forcing needs a continued assistant message, which the chat API
  lacks, so a config asking for it is refused at construction.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from loop.samplers import Completion, SamplerError, SamplingParams
from loop.samplers.budget import group_seed

MAX_WAIT_S = 60.0


class _Retryable(Exception):
    def __init__(self, msg: str, retry_after: float | None = None):
        super().__init__(msg)
        self.retry_after = retry_after


class OpenAISampler:
    name = "openai"

    def __init__(self, model_dir, adapter_dir, sample_cfg, model_cfg):
        self.cfg = sample_cfg.openai
        if sample_cfg.budget.thinking_tokens is not None or sample_cfg.budget.waits:
            raise SamplerError(
                "openai backend: budget forcing (sample.budget) needs continuing a partial "
                "assistant message, which the chat API lacks; use the vllm or hf backend"
            )
        self.base = self.cfg.base_url.rstrip("/")
        self.key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        self.adapter_dir = adapter_dir
        self.model = self._pick_model(self._probe())

    @property
    def served_model(self) -> str:
        """The endpoint's model name: the weights that write this backend's samples."""
        return self.model

    def _probe(self) -> list[str]:
        try:
            body = self._call("GET", "/models", None, [], timeout=min(self.cfg.timeout_s, 10.0))
        except SamplerError as e:
            raise SamplerError(f"openai backend: endpoint {self.base} is not usable: {e}") from None
        # an entry without a string id names no model (None would become the model name)
        return [m["id"] for m in body.get("data", []) if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def _pick_model(self, served: list[str]) -> str:
        if self.cfg.model is None:
            if not served:
                raise SamplerError(f"openai backend: {self.base}/models lists no model; set sample.openai.model")
            return served[0]
        if served and self.cfg.model not in served:
            raise SamplerError(
                f"openai backend: model {self.cfg.model!r} is not served by {self.base}; "
                f"it serves: {', '.join(served[:20])}"
            )
        return self.cfg.model

    def set_adapter(self, adapter_dir) -> None:
        self.adapter_dir = adapter_dir  # the server's weights are not ours to change

    def close(self) -> None:
        pass

    # --- generation ---------------------------------------------------------------
    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, progress: Callable[[int], None] | None = None
    ) -> list[list[Completion]]:
        if params.budgeted:
            raise SamplerError("openai backend: budget forcing is not supported (see module docstring)")
        out = []
        for i, messages in enumerate(prompts):
            out.append(self._group(messages, params, group_seed(params.seed, i)))
            if progress:
                progress(params.n)
        return out

    def _group(self, messages: list[dict], params: SamplingParams, seed: int) -> list[Completion]:
        payload = {
            "model": self.model,
            "messages": messages,
            "n": params.n,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": seed,
        }
        if params.stop:
            payload["stop"] = list(params.stop)
        retries: list[dict] = []
        body = self._call("POST", "/chat/completions", payload, retries)
        choices = sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != params.n:
            raise SamplerError(f"openai backend: asked for n={params.n} choices, got {len(choices)}")
        usage = body.get("usage") or {}
        texts = [(c.get("message") or {}).get("content") or "" for c in choices]
        tokens = _split_tokens(
            int(usage.get("completion_tokens") or 0),
            texts,
            [c.get("finish_reason") == "length" for c in choices],
            params.max_new_tokens,
        )
        meta: dict[str, Any] = {"retries": retries} if retries else {}
        if params.n > 1:
            meta["tokens_estimated"] = True
        return [
            Completion(
                text=t,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=k,
                finish_reason="length" if c.get("finish_reason") == "length" else "stop",
                meta=dict(meta),
            )
            for c, t, k in zip(choices, texts, tokens)
        ]

    # --- HTTP ---------------------------------------------------------------------
    def _call(
        self, method: str, path: str, payload: dict | None, retries: list[dict], timeout: float | None = None
    ) -> dict:
        """One request with retries; each retry is appended to `retries`."""
        for attempt in range(self.cfg.max_retries + 1):
            try:
                return self._once(method, path, payload, timeout or self.cfg.timeout_s)
            except _Retryable as e:
                if attempt == self.cfg.max_retries:
                    raise SamplerError(
                        f"{method} {self.base}{path} failed after {attempt + 1} attempt(s): {e}"
                    ) from None
                wait = min(MAX_WAIT_S, max(self.cfg.backoff_s * 2**attempt, e.retry_after or 0.0))
                retries.append({"attempt": attempt + 1, "error": str(e), "wait_s": wait})
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, payload: dict | None, timeout: float) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:500].decode("utf-8", "replace")
            if e.code == 429 or e.code >= 500:
                raise _Retryable(f"HTTP {e.code}: {detail}", _retry_after(e.headers)) from None
            raise SamplerError(f"{method} {self.base}{path}: HTTP {e.code}: {detail}") from None
        except urllib.error.URLError as e:
            raise _Retryable(f"connection error: {e.reason}") from None
        except TimeoutError:
            raise _Retryable(f"timeout after {timeout:g} s") from None
        except (ConnectionError, OSError) as e:
            raise _Retryable(f"connection error: {type(e).__name__}: {e}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise SamplerError(f"{method} {self.base}{path}: response is not JSON: {raw[:200]!r}") from None


def _retry_after(headers) -> float | None:
    try:
        return float(headers.get("Retry-After")) if headers and headers.get("Retry-After") else None
    except ValueError:
        return None


def _split_tokens(total: int, texts: list[str], capped: list[bool], max_tokens: int) -> list[int]:
    """Split a request's completion-token total over its choices: a choice cut by
    length has exactly max_tokens; the rest is shared by text length."""
    if len(texts) == 1:
        return [total]
    parts = [max_tokens if c else 0 for c in capped]
    free = [k for k, c in enumerate(capped) if not c]
    rest, chars = max(0, total - sum(parts)), [len(texts[k]) for k in free]
    for k, c in zip(free, chars):
        parts[k] = rest * c // sum(chars) if sum(chars) else rest // len(free)
    if free:
        parts[free[chars.index(max(chars))]] += rest - sum(parts[k] for k in free)
    return parts
