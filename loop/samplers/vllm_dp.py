"""Data parallelism for the vllm backend: `sample.vllm.data_parallel_size` = N engine replicas.

Contract: `DataParallelSampler` has the sampler interface (loop.samplers) plus release/reacquire.
Each replica is a VLLMSampler in its own process (spawned; LOOP_VLLM_REPLICA=1 there), pinned to
its GPUs by CUDA_VISIBLE_DEVICES (vllm_engine.replica_devices: consecutive groups of
`tensor_parallel_size`). `generate` splits the prompts into N contiguous shards, sends each
replica its shard with the index of its first prompt (`first_index`, so every prompt keeps the
seeds it has in one engine: same completions, only spread), waits for all and joins them in
order; set_adapter, release, reacquire and close go to every replica. A replica's failure is
re-raised here as SamplerError. Progress is reported per shard as it returns.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
from collections.abc import Callable

from loop.samplers import SamplerError, SamplingParams
from loop.samplers.vllm_engine import replica_devices


def shards(count: int, parts: int) -> list[tuple[int, int]]:
    """(start, stop) of `parts` contiguous, near-equal shards of range(count); empty ones dropped."""
    base, extra = divmod(count, parts)
    out, start = [], 0
    for k in range(parts):
        stop = start + base + (1 if k < extra else 0)
        if stop > start:
            out.append((start, stop))
        start = stop
    return out


class ProcessReplica:
    """One sampler in a spawned process; `submit` sends a call, `result` waits for its answer."""

    def __init__(self, target: str, devices: str, args: tuple):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, target, devices, args), daemon=True)
        self.proc.start()
        self.result()  # the engine has started (or its error comes back)

    def submit(self, method: str, *args, **kw) -> None:
        self.conn.send((method, args, kw))

    def result(self):
        try:
            ok, value = self.conn.recv()
        except EOFError:
            raise SamplerError(f"vllm replica (pid {self.proc.pid}) exited") from None
        if not ok:
            raise SamplerError(f"vllm replica: {value}")
        return value

    def stop(self) -> None:
        try:
            self.submit("close")
            self.result()
        except (SamplerError, OSError, BrokenPipeError):
            pass
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()


def _serve(conn, target: str, devices: str, args: tuple) -> None:
    """A replica process: build the sampler on its GPUs, then answer calls until close."""
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    os.environ["LOOP_VLLM_REPLICA"] = "1"
    mod, cls = target.split(":")
    try:
        sampler = getattr(importlib.import_module(mod), cls)(*args)
        conn.send((True, None))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        conn.send((False, f"{type(e).__name__}: {e}"))
        return
    while True:
        method, a, kw = conn.recv()
        try:
            conn.send((True, getattr(sampler, method)(*a, **kw)))
        except Exception as e:  # noqa: BLE001
            conn.send((False, f"{type(e).__name__}: {e}"))
        if method == "close":
            return


class DataParallelSampler:
    name = "vllm"

    def __init__(
        self,
        model_dir,
        adapter_dir,
        sample_cfg,
        model_cfg,
        *,
        replicas: list | None = None,
        target: str = "loop.samplers.vllm:VLLMSampler",
    ):
        v = sample_cfg.vllm
        if replicas is None:
            import torch

            devices = replica_devices(
                v.data_parallel_size,
                v.tensor_parallel_size,
                os.environ.get("CUDA_VISIBLE_DEVICES"),
                torch.cuda.device_count(),
            )
            args = (str(model_dir), str(adapter_dir) if adapter_dir else None, sample_cfg, model_cfg)
            replicas = []
            try:
                for d in devices:
                    replicas.append(ProcessReplica(target, d, args))
            except SamplerError:
                for r in replicas:
                    r.stop()
                raise
        self.replicas = replicas
        self.dtype = self._all("__getattribute__", "dtype")[0]

    def _all(self, method: str, *args) -> list:
        for r in self.replicas:
            r.submit(method, *args)
        return [r.result() for r in self.replicas]

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, progress: Callable[[int], None] | None = None
    ) -> list[list]:
        parts = shards(len(prompts), len(self.replicas))
        for r, (a, b) in zip(self.replicas, parts):
            r.submit("generate", prompts[a:b], params, None, first_index=a)
        out: list[list] = []
        for r, (a, b) in zip(self.replicas, parts):
            out.extend(r.result())
            if progress:
                progress((b - a) * params.n)
        return out

    def set_adapter(self, adapter_dir) -> None:
        self._all("set_adapter", str(adapter_dir) if adapter_dir else None)

    def release(self) -> None:
        self._all("release")

    def reacquire(self) -> None:
        self._all("reacquire")

    def close(self) -> None:
        for r in self.replicas:
            r.stop()
        self.replicas = []
