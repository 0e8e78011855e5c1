"""Model export: one model version out of the store, as a LoRA adapter, a merged 16-bit
Hugging Face folder, or a GGUF file, with a model card giving its lineage.

Contract:
- Which model: `round` (the last accepted model registered in that round of the run),
  `version` (a model_version, or a unique prefix of one, in any run), or neither: the run's
  current accepted model (the daemon's rule). The run: `run_id`, else the store's latest
  (for `version`, the model's own run). Unknown round/version, or both given: ExportError.
- The store is opened read-only and closed before any weights are touched.
- The adapter folder and the base folder must still hash (loop.models.model_hash) to the
  versions the store recorded, else ExportError: the export is what the store describes.
- `out` must be absent or empty unless force=True; it must not hold the store or the
  model folders. Everything is written into a temporary sibling renamed into place, so
  `out` holds either its old content or a complete export.
- Formats:
  lora      the PEFT adapter folder (adapter_config.json, adapter_model.safetensors) + the
            base tokenizer and chat template; loads with PeftModel on the base model.
  merged16  base + adapter merged in fp32 (peft merge_and_unload), saved in `dtype`
            (bfloat16 default; float16, float32) with tokenizer, chat template and
            generation config; loads in plain transformers, no peft.
  gguf      the fp32 merge as `model-<outtype>.gguf` (f32|f16|bf16|q8_0); writer choice in
            loop.export.gguf (llama.cpp's converter when configured, else built-in).
- Every export has README.md (model card) and lineage.json: the base model, each ancestor
  version (walking models.parent), rounds, method, data counts and hash, the held-out
  accuracy per round up to the model's round, the run's and the exporter's loop version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from loop import __version__
from loop.chat_templates import run_template
from loop.export.errors import ExportError
from loop.export.gguf import OUTTYPES, find_converter, write_gguf
from loop.models import ModelError, load_for_inference, model_hash, resolve_model
from loop.prompts import system_text
from loop.vlm import copy_processor_files, is_vision_model, load_merged
from store import lineage as lineage_q
from store import queries
from store.db import Store

FORMATS = ("lora", "merged16", "gguf")
DTYPES = ("bfloat16", "float16", "float32")


def export_model(
    store_path: str | Path,
    out: str | Path,
    fmt: str = "merged16",
    round: int | None = None,
    version: str | None = None,
    run_id: str | None = None,
    dtype: str = "bfloat16",
    outtype: str = "f16",
    converter: str | None = None,
    force: bool = False,
) -> dict:
    """Export one model version into `out`; return its lineage (with an `export` section)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if fmt == "gguf":  # a bad outtype or converter fails before any work
        if outtype not in OUTTYPES:
            raise ExportError(f"unknown GGUF outtype {outtype!r}; valid: {', '.join(OUTTYPES)}")
        converter = find_converter(converter)
    out = Path(out)
    check_out(out, force)
    lin = lineage(store_path, round=round, version=version, run_id=run_id)
    base, adapter = _verified_folders(lin, Path(store_path))
    guard_out(out, [Path(store_path), base, adapter])
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        info = _write(fmt, base, adapter, tmp, dtype, outtype, converter, lin)
        lin["export"] = {
            "format": fmt,
            **info,
            "loop_version": _loop_version(),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": sorted(p.name for p in tmp.iterdir()) + ["README.md", "lineage.json"],
        }
        write_card(tmp, lin)
        _readable(tmp)
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return lin


def _write(
    fmt: str, base: Path, adapter: Path, dest: Path, dtype: str, outtype: str, converter: str | None, lin: dict
) -> dict:
    if fmt == "lora":
        write_lora(base, adapter, dest, lin["base"]["name"])
        return {}
    if fmt == "merged16":
        write_merged(base, adapter, dest, dtype)
        return {"dtype": dtype}
    with tempfile.TemporaryDirectory(prefix="loop-export-") as work:
        merged = Path(work) / "merged"
        write_merged(base, adapter, merged, "float32")
        name = f"loop {lin['model']['version']} ({lin['base']['name']})"
        return write_gguf(merged, dest / f"model-{outtype}.gguf", outtype, converter, Path(work), name)


# --- which model, and where it came from --------------------------------------------
def lineage(
    store_path: str | Path, round: int | None = None, version: str | None = None, run_id: str | None = None
) -> dict:
    """The selected model, its ancestors (oldest first), the run's base and held-out curve."""
    if round is not None and version is not None:
        raise ExportError("give --round or --model-version, not both")
    with Store(store_path, read_only=True) as st:
        rid = run_id or (None if version else queries.latest_run(st))
        if not version and rid is None:
            raise ExportError(f"{store_path}: no runs in this store")
        row = _select(st, rid, round, version)
        chain, base_version = _ancestors(st, row)
        run = lineage_q.run(st, row["run_id"])
        evals = lineage_q.heldout_curve(st, row["run_id"], row["round"])
    cfg = _json(run["config"]) if run else {}
    return {
        "model": chain[-1],
        "ancestors": chain,
        "base": {"name": (cfg.get("model") or {}).get("name"), "version": base_version, "path": row["base_path"]},
        "run": {
            "run_id": row["run_id"],
            "loop_version": run["loop_version"] if run else None,
            "dir": (cfg.get("run") or {}).get("dir"),
            "model_cache": (cfg.get("model") or {}).get("cache_dir"),
        },
        "evaluations": evals,
        "prompt": {
            "system": system_text((cfg.get("prompt") or {}).get("system")),
            "chat_template_from": run_template(cfg)[1] if cfg else "unknown (no config stored with the run)",
        },
    }


def _select(st, rid: str | None, round: int | None, version: str | None) -> dict:
    if version is not None:
        rows = lineage_q.by_version_prefix(st, version)
        if not rows:
            raise ExportError(f"no model version {version!r} in the store; known: {_known_versions(st)}")
        if len({r["model_version"] for r in rows}) > 1:
            raise ExportError(
                f"model version prefix {version!r} is ambiguous: {', '.join(r['model_version'] for r in rows)}"
            )
        return rows[0]
    assert rid is not None  # lineage() resolves the run when no version is given
    if round is not None:
        row = lineage_q.accepted_in_round(st, rid, round)
        if row is None:
            have = lineage_q.rounds_with_model(st, rid)
            raise ExportError(
                f"no trained model for round {round} in run {rid}; rounds with a model: "
                f"{', '.join(str(r) for r in have) or 'none'}"
            )
        return row
    row = lineage_q.latest_accepted(st, rid)
    if row is None:
        raise ExportError(f"run {rid} has no trained model yet (the current model is the base)")
    return row


def _known_versions(st) -> str:
    rows = lineage_q.recent_versions(st)
    return ", ".join(f"{r['model_version']} (round {r['round']})" for r in rows) or "none"


def _ancestors(st, row: dict) -> tuple[list[dict], str | None]:
    """(chain oldest first ending at row, the base version the chain starts from)."""
    chain, seen = [_entry(row)], {row["model_version"]}
    parent = row["parent"]
    while parent and parent not in seen:
        found = lineage_q.model(st, parent)
        if found is None:
            break
        seen.add(parent)
        chain.append(_entry(found))
        parent = found["parent"]
    return chain[::-1], parent


def _entry(row: dict) -> dict:
    cfg, m = _json(row["config"]), _json(row["metrics"])
    return {
        "version": row["model_version"],
        "parent": row["parent"],
        "run_id": row["run_id"],
        "round": row["round"],
        "method": cfg.get("method"),
        "backend": m.get("backend") or cfg.get("backend"),
        "examples": m.get("examples"),
        "data_hash": row["data_hash"],
        "steps": m.get("steps"),
        "last_loss": m.get("last_loss"),
        "lora": cfg.get("lora"),
        "accepted": m.get("accepted", True),
        "created_at": str(row["created_at"]),
        "path": row["path"],
    }


def _json(v) -> dict:
    return (json.loads(v) if isinstance(v, str) else v) or {}


def _verified_folders(lin: dict, store_path: Path) -> tuple[Path, Path]:
    """(base folder, adapter folder), each checked against its recorded version."""
    m, run = lin["model"], lin["run"]
    name = Path(m["path"]).name
    cands = [Path(m["path"]), store_path.parent / "models" / name]
    if run.get("dir"):
        cands.append(Path(run["dir"]) / "models" / name)
    adapter = next((c for c in cands if (c / "adapter_config.json").is_file()), None)
    if adapter is None:
        raise ExportError(f"adapter folder of model {m['version']} is missing: {m['path']}")
    if model_hash(adapter) != m["version"]:
        raise ExportError(f"{adapter} no longer matches model version {m['version']} (its weights changed)")
    base = Path(lin["base"]["path"] or "")
    if not (base / "config.json").is_file():
        try:
            base = resolve_model(lin["base"]["name"], run.get("model_cache"))
        except ModelError as e:
            raise ExportError(f"base model of {m['version']} is missing: {lin['base']['path']} ({e})") from None
    if lin["base"]["version"] and model_hash(base) != lin["base"]["version"]:
        raise ExportError(
            f"base model {base} does not match version {lin['base']['version']} recorded for this lineage"
        )
    lin["base"]["path"] = str(base)
    return base, adapter


# --- the output folder ---------------------------------------------------------------
def check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out} exists and is not empty; pass --force to replace it")


def guard_out(out: Path, keep: list[Path]) -> None:
    o = out.resolve()
    for p in keep:
        if p.resolve() == o or o in p.resolve().parents:
            raise ExportError(f"--out {out} holds {p}; choose another directory")


def _readable(folder: Path) -> None:
    """Files 0644 and folders 0755 (a trainer's temporary files can be 0600): an export is for sharing."""
    folder.chmod(0o755)
    for p in folder.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


def _publish(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


# --- the formats ---------------------------------------------------------------------
def write_lora(base: Path, adapter: Path, dest: Path, base_name: str | None = None) -> None:
    """The adapter folder as trained (PEFT's own README excepted) + the base tokenizer; its
    `base_model_name_or_path` names the model the user gave (`model.name`), not our cache path."""
    from transformers import AutoTokenizer

    for f in adapter.iterdir():
        if f.is_file() and f.name != "README.md":
            shutil.copy2(f, dest / f.name)
    cfg_path = dest / "adapter_config.json"
    if base_name and cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = base_name
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    AutoTokenizer.from_pretrained(base).save_pretrained(dest)


def write_merged(base: Path, adapter: Path, dest: Path, dtype: str) -> None:
    """Base + adapter merged in fp32, saved in `dtype` with tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer

    vision = is_vision_model(base)
    model = load_merged(base, adapter) if vision else load_for_inference(base, adapter, "float32")[0]
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(base).save_pretrained(dest)
    if vision:
        copy_processor_files(base, dest)


def _loop_version() -> str:
    return __version__


# --- the model card ------------------------------------------------------------------
def write_card(dest: Path, lin: dict) -> None:
    """README.md (for people) and lineage.json (for programs) into `dest`."""
    (dest / "lineage.json").write_text(json.dumps(lin, indent=2, default=str) + "\n")
    (dest / "README.md").write_text(card(lin))


def card(lin: dict) -> str:
    m, b, ex, run = lin["model"], lin["base"], lin["export"], lin["run"]
    lib = {"lora": "peft", "merged16": "transformers", "gguf": "gguf"}[ex["format"]]
    how = ex.get("dtype") or " ".join(x for x in (ex.get("outtype"), ex.get("writer") and f"via {ex['writer']}") if x)
    lines = [
        "---",
        f"library_name: {lib}",
        *([f"base_model: {json.dumps(b['name'])}"] if b["name"] else []),
        f"tags: [loop, {ex['format']}]",
        "---",
        "",
        f"# loop model `{m['version']}`",
        "",
        f"Exported by loop {ex['loop_version']} on {ex['exported_at']} as **{ex['format']}**"
        + (f" ({how})" if how else "")
        + ".",
        "",
        "| | |",
        "|---|---|",
        f"| model version | `{m['version']}` |",
        f"| run | `{run['run_id']}` (loop {run['loop_version']}) |",
        f"| round | {m['round']} |",
        f"| base model | `{b['name']}` (version `{b['version']}`) |",
        "",
        "## Lineage",
        "",
        "Each version is a LoRA adapter trained from its parent's weights (the first from the base "
        "model); the exported weights are the base plus the last adapter.",
        "",
        "| # | version | parent | round | method | backend | examples | data hash | steps | last loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| 0 | `{b['version']}` (base `{b['name']}`) | | | | | | | | |",
    ]
    for i, a in enumerate(lin["ancestors"], 1):
        loss = "" if a["last_loss"] is None else f"{a['last_loss']:.4f}"
        lines.append(
            f"| {i} | `{a['version']}` | `{a['parent']}` | {a['round']} | {a['method']} | {a['backend']} "
            f"| {_s(a['examples'])} | `{a['data_hash']}` | {_s(a['steps'])} | {loss} |"
        )
    lines += [
        "",
        "## Held-out evaluation",
        "",
        "Greedy pass@1 on the run's fixed held-out set; round 0 is the base model before training.",
        "",
        "| round | model | n | correct | accuracy | format rate |",
        "|---|---|---|---|---|---|",
    ]
    for e in lin["evaluations"]:
        mark = " (this model)" if e["model_version"] == m["version"] else ""
        lines.append(
            f"| {e['round']} | `{e['model_version']}`{mark} | {e['n']} | {e['correct']} "
            f"| {_pct(e['accuracy'])} | {_pct(e['format_rate'])} |"
        )
    if not lin["evaluations"]:
        lines.append("| | no evaluation recorded | | | | |")
    lines += _prompt_lines(lin.get("prompt") or {}, ex)
    lines += [
        "",
        "## Files",
        "",
        *[f"- `{f}`" for f in ex["files"]],
        "",
        "## Loading",
        "",
        "```python",
        _usage(ex, b),
        "```",
        "",
    ]
    return "\n".join(lines)


def _prompt_lines(p: dict, ex: dict) -> list[str]:
    """The system prompt and chat template the model was trained with, and how to render them."""
    system = p.get("system")
    gguf = f", gguf_file='model-{ex.get('outtype')}.gguf'" if ex["format"] == "gguf" else ""
    chat = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "What is 2 + 3?"}]
    return [
        "",
        "## Prompt",
        "",
        "Trained and evaluated with this system prompt:" if system else "Trained without a system message.",
        *(["", "```text", system, "```"] if system else []),
        "",
        f"Chat template: {p.get('chat_template_from', 'unknown')}; the tokenizer files here carry it.",
        "",
        "```python",
        "from transformers import AutoTokenizer",
        f"tok = AutoTokenizer.from_pretrained('THIS_DIR'{gguf})",
        f"messages = {json.dumps(chat, ensure_ascii=False)}",
        "print(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))",
        "```",
    ]


def _usage(ex: dict, b: dict) -> str:
    if ex["format"] == "lora":
        return (
            "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"base = AutoModelForCausalLM.from_pretrained({b['path']!r})  # {b['name']}\n"
            "model = PeftModel.from_pretrained(base, 'THIS_DIR')\ntok = AutoTokenizer.from_pretrained('THIS_DIR')"
        )
    if ex["format"] == "merged16":
        return (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "model = AutoModelForCausalLM.from_pretrained('THIS_DIR')\n"
            "tok = AutoTokenizer.from_pretrained('THIS_DIR')"
        )
    f = f"model-{ex['outtype']}.gguf"
    return (
        f"# llama.cpp: llama-cli -m THIS_DIR/{f}\nfrom transformers import AutoModelForCausalLM\n"
        f"model = AutoModelForCausalLM.from_pretrained('THIS_DIR', gguf_file={f!r})"
    )


def _s(v) -> str:
    return "" if v is None else str(v)


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}%"
