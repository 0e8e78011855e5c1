"""`loop inspect export --format trl-sft|trl-grpo`: a run's data as TRL's trainers take it.

- `trl-sft`: the SFT set the train stage would build from the run's verified samples
  (loop.trainers.chains.select_chains: one chain a problem, strict format first, else
  repaired), conversational: `prompt` (system + user messages) and `completion` (the
  assistant message), or with `messages=True` one `messages` column (all three) — what
  `trl.SFTTrainer` reads as is.
- `trl-grpo`: every problem the run sampled, `prompt` (system + user) with `answer` (the gold
  answer, the column loop's rewards read), `problem_id` and `pass_rate` (extra columns reach
  `trl.GRPOTrainer`'s reward functions as keyword arguments).
`round` keeps one round's samples only. The system prompt is the run's `prompt.system` (from
the config stored with the run), so the rows are the prompts the run sampled and trained with.
DIR gets `train.jsonl` and `train.parquet` (the same rows), `chat_template.jinja` (the template
the run rendered prompts with: `model.chat_template`, else the model's own), `README.md` (a
dataset card: system prompt, chat template, a runnable `apply_chat_template` and trainer
example) and `export.json` (manifest). Written in a sibling temporary directory, renamed
when complete; a non-empty DIR is refused unless `force`, and one holding the store always.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from loop.chat_templates import run_template
from loop.export.errors import ExportError
from loop.export.model import check_out, guard_out
from loop.inspection import InspectError, open_store, resolve_run
from loop.prompts import messages, system_text
from loop.trainers.chains import select_chains
from store import pipeline, queries

FORMATS = ("trl-sft", "trl-grpo")
LAST = 2**31 - 1  # "every round" as an upper bound


def export_trl(path, out, fmt: str, run_id=None, round: int | None = None, force=False, messages_col=False) -> dict:
    """Write the TRL dataset of a run into `out`; return its manifest (+ `out`)."""
    if fmt not in FORMATS:
        raise InspectError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    try:
        check_out(out, force)
        guard_out(out, [Path(path)])  # --force never removes the store it reads
    except ExportError as e:
        raise InspectError(str(e)) from None
    with open_store(path) as st:
        rid = resolve_run(st, run_id)
        if rid is None:
            raise InspectError(f"{path}: no runs to export")
        cfg = queries.run_config(st, rid)
        system = (cfg.get("prompt") or {}).get("system")
        first, last = (round, round) if round is not None else (0, LAST)
        if fmt == "trl-sft":
            rows = sft_rows(pipeline.verified_chains(st, rid, first, last), system, messages_col)
        else:
            rows = grpo_rows(queries.trl_problems(st, rid, first, last), system)
    template, template_from = run_template(cfg)
    manifest = {
        "run_id": rid,
        "format": fmt,
        "columns": list(rows[0]) if rows else [],
        "round": round,
        "rows": len(rows),
        "system_prompt": system_text(system),
        "chat_template_from": template_from,
        "store": str(path),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _publish(out, rows, manifest, template, force)
    return {**manifest, "out": str(out)}


def sft_rows(chains: list[dict], system: str | None, messages_col: bool) -> list[dict[str, Any]]:
    rows = select_chains(chains, None, 0, system)
    if messages_col:
        return [{"messages": r["prompt"] + r["completion"]} for r in rows]
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]


def grpo_rows(problems: list[dict], system: str | None) -> list[dict[str, Any]]:
    return [
        {
            "prompt": messages(p["question"], system),
            "answer": p["answer"],
            "problem_id": p["problem_id"],
            "pass_rate": p["pass_rate"],
        }
        for p in problems
    ]


def _publish(out: Path, rows: list[dict], manifest: dict, template: str | None, force: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with open(tmp / "train.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        pq.write_table(pa.Table.from_pylist(rows) if rows else pa.table({}), tmp / "train.parquet")
        if template is not None:
            (tmp / "chat_template.jinja").write_text(template, encoding="utf-8")
        (tmp / "README.md").write_text(card(manifest, template), encoding="utf-8")
        (tmp / "export.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        if out.exists():
            shutil.rmtree(out)  # empty, or --force (a directory not holding the store: checked first)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def card(m: dict, template: str | None) -> str:
    """The dataset card: what the rows are, the system prompt and chat template, runnable code."""
    sft = m["format"] == "trl-sft"
    trainer = "SFTTrainer" if sft else "GRPOTrainer"
    column = "messages" if m["columns"][:1] == ["messages"] else "prompt"
    rounds = f"round {m['round']}" if m["round"] is not None else "every round"
    system = f"```text\n{m['system_prompt']}\n```" if m["system_prompt"] else "None (no system message)."
    tpl = f"```jinja\n{template}\n```" if template else f"Not stored with this export: {m['chat_template_from']}."
    set_tpl = (
        'tok.chat_template = open("chat_template.jinja").read()  # the template the run used\n' if template else ""
    )
    gen = "" if column == "messages" else ", add_generation_prompt=True"
    extra = "" if sft else ", reward_funcs=[...]  # loop's rewards read the `answer` column"
    return f"""# loop export: run {m["run_id"]}, {m["format"]}

{m["rows"]} rows ({rounds}), columns: {", ".join(m["columns"]) or "none"}. `train.jsonl` and `train.parquet`
hold the same rows, for `trl.{trainer}` as they are.

## System prompt

{system}

## Chat template

The prompts were rendered with {m["chat_template_from"]}:

{tpl}

## Use

```python
from datasets import load_dataset
from transformers import AutoTokenizer

ds = load_dataset("json", data_files="train.jsonl", split="train")
tok = AutoTokenizer.from_pretrained("YOUR_MODEL")
{set_tpl}print(tok.apply_chat_template(ds[0]["{column}"], tokenize=False{gen}))

from trl import {trainer}
trainer = {trainer}(model="YOUR_MODEL", train_dataset=ds, processing_class=tok{extra})
```
"""
