"""Train stage: distillation SFT on verified chains, in its own process.

The stage (in the daemon) picks the training set from the store, writes it as a
Parquet snapshot, runs `python -m loop.train JOB.json` as a child process, and
registers the resulting adapter as a new model version. The child only reads
the snapshot and writes the adapter folder (atomically renamed when complete),
so a crash in training cannot corrupt the store or take the daemon down. The
child dies with the daemon (Linux parent-death signal), so a killed daemon leaves
no orphan still writing the adapter folder that its restarted attempt rewrites.

Selection: per problem, the best verified chain: well-formed first, then the
shortest. A verified chain that is not in the target format is repaired: its
text up to the verified answer becomes the reasoning, the answer goes in tags.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from loop.prompts import format_chain, messages


class TrainError(RuntimeError):
    pass


def select_chains(rows: list[dict]) -> list[dict]:
    """rows: verified samples (problem_id, question, answer, completion, extracted, strict).
    Returns one SFT example per problem: {problem_id, prompt, completion}."""
    best: dict[str, dict] = {}
    for r in rows:
        key = (not r["strict"], len(r["completion"]), r["completion"])
        cur = best.get(r["problem_id"])
        if cur is None or key < cur["_key"]:
            best[r["problem_id"]] = {**r, "_key": key}
    out = []
    for pid in sorted(best):
        r = best[pid]
        target = r["completion"].strip() if r["strict"] else repair(r["completion"], r["extracted"], r["answer"])
        out.append({"problem_id": pid, "prompt": messages(r["question"]),
                    "completion": [{"role": "assistant", "content": target}]})
    return out


def repair(text: str, extracted: str | None, gold: str) -> str:
    """Wrap a verified but unformatted chain: reasoning up to the answer, then the answer."""
    cut = text.rfind(extracted) if extracted else -1
    reasoning = text[:cut + len(extracted)] if cut >= 0 else text
    return format_chain(reasoning or f"The answer is {gold}.", gold)


def data_hash(examples: list[dict]) -> str:
    blob = json.dumps(examples, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def write_snapshot(examples: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(examples), path)


def run_child(job: dict, job_path: Path, threads: int | None) -> dict:
    """Run the training job in a child process; return its metrics."""
    job_path.write_text(json.dumps(job, indent=2))
    env = dict(os.environ, LOOP_PARENT_PID=str(os.getpid()))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-m", "loop.train", str(job_path)], env=env)
    out = Path(job["out"])
    if proc.returncode != 0 or not (out / "metrics.json").exists():
        raise TrainError(f"training process failed (exit {proc.returncode}); job {job_path}")
    return json.loads((out / "metrics.json").read_text())


# --- the child process --------------------------------------------------------------
def train_job(job: dict) -> dict:
    """SFT with LoRA (PEFT) through TRL's SFTTrainer; writes adapter + metrics.json."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from loop import trl_compat

    trl_compat.install()
    from loop.models import quiet_transformers
    quiet_transformers()
    cfg = job["train"]
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    tok = AutoTokenizer.from_pretrained(job["base"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(job["base"], dtype=torch.float32)
    peft_config = None
    if job.get("parent_adapter"):  # continue the current adapter
        model = PeftModel.from_pretrained(model, job["parent_adapter"], is_trainable=True)
    else:
        lora = cfg["lora"]
        peft_config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                 target_modules=lora["target_modules"], task_type="CAUSAL_LM")
    ds = Dataset.from_parquet(job["data"])
    tmp = Path(job["out"] + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cuda = torch.cuda.is_available()
    args = SFTConfig(output_dir=str(tmp / "trainer"), max_steps=cfg["max_steps"],
                     per_device_train_batch_size=cfg["batch_size"],
                     gradient_accumulation_steps=cfg["grad_accum"], learning_rate=cfg["learning_rate"],
                     lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, save_strategy="no",
                     report_to=[], use_cpu=not cuda, bf16=False, max_length=cfg["max_seq_len"],
                     seed=job["seed"], data_seed=job["seed"], disable_tqdm=True,
                     dataloader_num_workers=0, gradient_checkpointing=False)
    from loop.progress import train_callback
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         peft_config=peft_config, callbacks=[train_callback("train (SFT)")])
    result = trainer.train()
    trainer.model.save_pretrained(tmp)
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {"train_loss": result.training_loss, "first_loss": losses[0] if losses else None,
               "last_loss": losses[-1] if losses else None, "steps": trainer.state.global_step,
               "examples": len(ds), "runtime_s": result.metrics.get("train_runtime")}
    (tmp / "metrics.json").write_text(json.dumps(metrics))
    shutil.rmtree(job["out"], ignore_errors=True)
    tmp.rename(job["out"])  # publish only a complete adapter
    return metrics


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    expected = os.environ.get("LOOP_PARENT_PID")
    if expected and os.getppid() != int(expected):  # parent died before prctl took effect
        os._exit(1)


if __name__ == "__main__":
    die_with_parent()
    train_job(json.loads(Path(sys.argv[1]).read_text()))


# --- the stage (daemon side) --------------------------------------------------------
def stage(ctx, r: int) -> dict:
    """SFT on verified chains after round r (every `train.every` rounds)."""
    cfg = ctx.cfg.train
    if cfg.every == 0 or r % cfg.every:
        return _skip(ctx, r, f"train.every={cfg.every}")
    rows = ctx.store.query(
        "SELECT s.problem_id, s.completion, s.extracted, p.question, p.answer, "
        "coalesce(TRY_CAST(json_extract(s.rewards, '$.strict_format') AS DOUBLE), 0) > 0 AS strict "
        "FROM samples s JOIN problems p USING (problem_id) "
        "WHERE s.run_id = ? AND s.verified AND s.round <= ? AND s.round >= ?",
        [ctx.run_id, r, 1 if cfg.replay else r])
    examples = select_chains(rows)
    if not examples:
        return _skip(ctx, r, "no verified chains")
    parent_version, parent_adapter = ctx.current_model()
    dh = data_hash(examples)
    work = ctx.run_dir / "train" / f"round-{r:03d}"
    write_snapshot(examples, work / "data.parquet")
    out = ctx.run_dir / "models" / f"round-{r:03d}"
    job = {"base": str(ctx.base_dir), "parent_adapter": str(parent_adapter) if parent_adapter else None,
           "data": str(work / "data.parquet"), "out": str(out), "seed": ctx.round_seed(r, "train"),
           "threads": ctx.cfg.run.threads, "train": cfg.model_dump(mode="json")}
    metrics = run_child(job, work / "job.json", ctx.cfg.run.threads)
    from loop.models import model_hash
    version = model_hash(out)
    info = {"model_version": version, "parent": parent_version, "examples": len(examples), **metrics}
    with ctx.store.transaction():
        ctx.store.insert_rows("models", [{
            "model_version": version, "parent": parent_version, "run_id": ctx.run_id, "round": r,
            "kind": "lora", "base_path": str(ctx.base_dir), "path": str(out), "data_hash": dh,
            "config": job["train"], "metrics": {**metrics, "accepted": True}}])
        ctx.mark_done(r, "train", info)
    return info


def _skip(ctx, r: int, why: str) -> dict:
    info = {"skipped": why}
    with ctx.store.transaction():
        ctx.mark_done(r, "train", info)
    return info
