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
  merged4   the fp32 merge quantized to bitsandbytes NF4 (loop.export.merged4), with its
            quantization_config; bitsandbytes 4-bit is checked before any work.
  gguf      the fp32 merge as `model-<outtype>.gguf` (f32|f16|bf16|q8_0, or a k-quant
            q4_k_m|q5_k_m|q6_k|q4_0 through llama.cpp's llama-quantize, found before any work);
            writer choice in loop.export.gguf (llama.cpp's converter when configured, else built-in).
  ollama    the gguf export plus a Modelfile (loop.export.ollama): the TEMPLATE, stop tokens and
            SYSTEM of the model's training prompt (lineage run.prompt: its chat template and the
            run's system prompt).
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
from loop.export.card import write_card
from loop.export.errors import ExportError
from loop.export.gguf import ALL_OUTTYPES, find_converter, write_gguf
from loop.export.merged4 import check_bnb4, write_merged4
from loop.export.ollama import write_modelfile
from loop.export.quantize import QUANTS, find_tool
from loop.models import ModelError, load_for_inference, model_hash, resolve_model
from loop.prompts import system_text
from loop.vlm import copy_processor_files, is_vision_model, load_merged
from store import lineage as lineage_q
from store import queries
from store.db import Store

FORMATS = ("lora", "merged16", "merged4", "gguf", "ollama")
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
    quantizer: str | None = None,
) -> dict:
    """Export one model version into `out`; return its lineage (with an `export` section)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if fmt in ("gguf", "ollama"):  # a bad outtype, converter or quantizer fails before any work
        if outtype not in ALL_OUTTYPES:
            raise ExportError(f"unknown GGUF outtype {outtype!r}; valid: {', '.join(ALL_OUTTYPES)}")
        converter = find_converter(converter)
        quantizer = find_tool("llama-quantize", quantizer) if outtype in QUANTS else None
    if fmt == "merged4":
        check_bnb4()
    out = Path(out)
    check_out(out, force)
    lin = lineage(store_path, round=round, version=version, run_id=run_id)
    base, adapter = _verified_folders(lin, Path(store_path))
    guard_out(out, [Path(store_path), base, adapter])
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        info = _write(fmt, base, adapter, tmp, dtype, outtype, (converter, quantizer), lin)
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


def _write(fmt: str, base: Path, adapter: Path, dest: Path, dtype: str, outtype: str, tools: tuple, lin: dict) -> dict:
    """Write format `fmt` into `dest`; `tools` = (GGUF converter, llama-quantize path)."""
    if fmt == "lora":
        write_lora(base, adapter, dest, lin["base"]["name"])
        return {}
    if fmt == "merged16":
        write_merged(base, adapter, dest, dtype)
        return {"dtype": dtype}
    with tempfile.TemporaryDirectory(prefix="loop-export-") as work:
        merged = Path(work) / "merged"
        write_merged(base, adapter, merged, "float32")
        if fmt == "merged4":
            return write_merged4(merged, dest, dtype)
        name = f"loop {lin['model']['version']} ({lin['base']['name']})"
        gguf_name = f"model-{outtype}.gguf"
        info = write_gguf(merged, dest / gguf_name, outtype, tools[0], Path(work), name, tools[1])
        if fmt == "ollama":
            info["modelfile"] = write_modelfile(merged, dest, gguf_name, lin["run"]["prompt"])
        return info


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
            "prompt": training_prompt(cfg, chain[-1]["method"]),
        },
        "evaluations": evals,
        "prompt": {
            "system": system_text((cfg.get("prompt") or {}).get("system")),
            "chat_template_from": run_template(cfg)[1] if cfg else "unknown (no config stored with the run)",
        },
    }


def training_prompt(cfg: dict, method: str | None) -> dict:
    """{template, system} the model was trained with: `loop sft` (method instruct) uses
    instruct.template and the first source's system prompt; the rounds use loop.prompts."""
    if method == "instruct":
        ins = cfg.get("instruct") or {}
        system = next((s.get("system") for s in ins.get("sources") or [] if s.get("system")), None)
        return {"template": ins.get("template", "chat"), "system": system}
    return {"template": "chat", "system": system_text((cfg.get("prompt") or {}).get("system"))}


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
