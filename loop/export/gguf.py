"""GGUF writing for `loop export model --format gguf`: a merged fp32 Hugging Face folder -> one .gguf file.

Contract:
- Writer choice (`converter`): a path to llama.cpp's `convert_hf_to_gguf.py` (run as a
  subprocess with this Python, `--outtype OUTTYPE`), or "builtin". Unset: the env var
  LOOP_LLAMA_CPP_CONVERT, then `convert_hf_to_gguf.py` on PATH, then the copy that
  scripts/setup.sh unpacks into the loop cache (installed_converter), then "builtin".
  A converter that is named but missing or fails raises ExportError (its output's tail and
  what to install); there is no silent fallback to the other writer.
- The built-in writer uses the `gguf` package directly (the tensor names of
  MODEL_ARCH.LLAMA via TensorNameMap, llama.cpp's q/k row permutation, 1-D tensors kept
  in F32) for llama-architecture models with byte-level (GPT-2 style) BPE tokenizers;
  anything else raises ExportError naming what it is and how to get the converter. Its
  tensors are byte-identical to the converter's (SmolLM2-135M: bf16, q8_0; the tiny model
  in tests: f32); its metadata differs only in a few general.* fields.
- outtype: f32 | f16 | bf16 | q8_0 (q8_0: 2-D tensors whose rows are not a multiple of 32
  fall back to f16, as llama.cpp does), written by either writer; or a k-quant (QUANTS:
  q4_k_m | q5_k_m | q6_k | q4_0): an f32 GGUF from that writer, then llama.cpp's
  `llama-quantize` (loop.export.quantize; the binary is found before any work).
- Both writers read a *GGUF source* folder: the merged folder, or a staging copy of it
  (symlinked weights) with two tokenizer normalizations, each checked to change nothing
  the tokenizer does: a byte-level BPE's redundant byte fallback is dropped (llama.cpp
  otherwise mistakes it for a SentencePiece vocab), and where the tokenizer's eos is not
  among generation_config's eos ids (the embedded model's GGUF->HF conversion reports
  eos = bos), the GGUF eos becomes generation_config's first eos, the token that ends a turn.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from loop.export.errors import ExportError
from loop.export.quantize import QUANTS, quantize
from loop.models import loop_cache

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
ALL_OUTTYPES = OUTTYPES + QUANTS
ENV = "LOOP_LLAMA_CPP_CONVERT"
SCRIPT = "convert_hf_to_gguf.py"
HOW_TO_GET = (
    f"get llama.cpp's {SCRIPT}: `pip download --no-deps --no-binary :all: llama-cpp-python`, "
    f"unpack it, and set {ENV}=<unpacked>/vendor/llama.cpp/{SCRIPT} (it also needs "
    "`pip install sentencepiece`), or pass --converter PATH"
)
PROBE = (
    "\n \n\n \t\t \t\n  \n   🚀 (normal) 😶\u200d🌫️ ✅ 🦙 3 33 333 3333 3.3 3..3 កាន់តែ ?我想在apple工作1314151天～ "
    "------======= нещо на Български '''```\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? We'Ve a'lL  <|im_start|>user\nWhat is 47 + 38?<|im_end|>\n<|im_start|>assistant\n"
)


def installed_converter() -> str | None:
    """The converter scripts/setup.sh unpacks from the llama-cpp-python sdist, if there."""
    path = loop_cache() / "llama.cpp" / SCRIPT
    return str(path) if path.is_file() else None


def find_converter(converter: str | None = None) -> str:
    """'builtin' or the path of a llama.cpp converter script (see the module contract)."""
    choice = converter or os.environ.get(ENV) or shutil.which(SCRIPT) or installed_converter() or "builtin"
    if choice == "builtin":
        return choice
    path = Path(choice).expanduser()
    if not path.is_file():
        origin = "--converter" if converter else (ENV if os.environ.get(ENV) else "PATH")
        raise ExportError(
            f"llama.cpp converter {path} (from {origin}) does not exist; {HOW_TO_GET}, or use --converter builtin"
        )
    return str(path)


def write_gguf(
    merged: Path,
    dest: Path,
    outtype: str,
    converter: str | None,
    work: Path,
    name: str = "loop export",
    quantizer: str | None = None,
) -> dict:
    """Write `dest` (.gguf) from the merged fp32 folder; return {writer, converter, outtype[, quantizer]}.
    A k-quant outtype needs `quantizer`, the path of llama-quantize (loop.export.quantize.find_tool)."""
    if outtype not in ALL_OUTTYPES:
        raise ExportError(f"unknown GGUF outtype {outtype!r}; valid: {', '.join(ALL_OUTTYPES)}")
    if outtype in QUANTS:
        if quantizer is None:
            raise ExportError(f"GGUF outtype {outtype} needs llama.cpp's llama-quantize")
        f32 = work / "model-f32.gguf"
        info = write_gguf(merged, f32, "f32", converter, work, name)
        quantize(quantizer, f32, dest, outtype)
        f32.unlink()
        return {**info, "outtype": outtype, "quantizer": quantizer}
    which = find_converter(converter)
    src = gguf_source(merged, work / "gguf-src")
    if which == "builtin":
        write_builtin(src, dest, outtype, name)
        return {"writer": "builtin (gguf package)", "outtype": outtype}
    _run_converter(Path(which), src, dest, outtype, name)
    return {"writer": "llama.cpp convert_hf_to_gguf.py", "converter": which, "outtype": outtype}


def _run_converter(script: Path, src: Path, dest: Path, outtype: str, name: str | None = None) -> None:
    # --model-name: else general.name comes from the staging folder's name ('Gguf Src')
    cmd = [
        sys.executable,
        str(script),
        str(src),
        "--outfile",
        str(dest),
        "--outtype",
        outtype,
        *(["--model-name", name] if name else []),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 0 and dest.is_file():
        return
    log = (proc.stdout + proc.stderr).strip().splitlines()
    hint = ""
    if any("No module named 'sentencepiece'" in line for line in log):
        hint = " The converter needs sentencepiece: pip install sentencepiece."
    raise ExportError(
        f"llama.cpp converter {script} failed (exit {proc.returncode}).{hint} "
        f"Last lines:\n" + "\n".join(log[-12:]) + "\n(--converter builtin uses the built-in writer)"
    )


# --- the GGUF source folder ---------------------------------------------------------
def gguf_source(merged: Path, stage: Path) -> Path:
    """The merged folder, or a staging copy with the tokenizer normalized for GGUF writers."""
    replaced: dict[str, str] = {}
    tj_path = merged / "tokenizer.json"
    if tj_path.is_file():
        tj = json.loads(tj_path.read_text())
        plain = _plain_byte_level(tj)
        if plain is not None:
            _check_same_tokenizer(tj, plain)
            replaced["tokenizer.json"] = json.dumps(plain, ensure_ascii=False)
    tc_path = merged / "tokenizer_config.json"
    eos = _generation_eos(merged)
    if tc_path.is_file() and eos is not None:
        tc = json.loads(tc_path.read_text())
        if tc.get("eos_token_id") is not None and tc["eos_token_id"] not in eos[1]:
            tc["eos_token"], tc["eos_token_id"] = eos[0], eos[1][0]
            replaced["tokenizer_config.json"] = json.dumps(tc, indent=2)
    if not replaced:
        return merged
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for f in merged.iterdir():
        if f.name in replaced:
            (stage / f.name).write_text(replaced[f.name], encoding="utf-8")
        else:
            (stage / f.name).symlink_to(f.resolve())
    return stage


def _plain_byte_level(tj: dict) -> dict | None:
    """A byte-level BPE with byte_fallback and a fused decoder -> plain GPT-2 style; else None."""
    model, dec = tj.get("model") or {}, tj.get("decoder") or {}
    if model.get("type") != "BPE" or not model.get("byte_fallback") or not _has(tj.get("pre_tokenizer"), "ByteLevel"):
        return None
    level = [d for d in dec.get("decoders", [dec]) if d.get("type") == "ByteLevel"]
    if not level:
        return None
    return {**tj, "model": {**model, "byte_fallback": False}, "decoder": level[0]}


def _has(node: dict | None, kind: str) -> bool:
    if not node:
        return False
    return node.get("type") == kind or any(_has(n, kind) for n in node.get("pretokenizers", []))


def _check_same_tokenizer(a: dict, b: dict) -> None:
    from tokenizers import Tokenizer

    ta, tb = Tokenizer.from_str(json.dumps(a)), Tokenizer.from_str(json.dumps(b))
    ids = ta.encode(PROBE).ids
    if tb.encode(PROBE).ids != ids or tb.decode(ids, skip_special_tokens=False) != ta.decode(
        ids, skip_special_tokens=False
    ):
        raise ExportError("cannot normalize the tokenizer for GGUF: dropping its byte fallback changes tokenization")


def _generation_eos(folder: Path) -> tuple[str, list[int]] | None:
    """(first eos token text, eos ids) from generation_config.json, or None."""
    gc, tj = folder / "generation_config.json", folder / "tokenizer.json"
    if not gc.is_file() or not tj.is_file():
        return None
    ids = json.loads(gc.read_text()).get("eos_token_id")
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if not ids:
        return None
    vocab = json.loads(tj.read_text())
    names = {v: k for k, v in vocab["model"].get("vocab", {}).items()}
    names.update({t["id"]: t["content"] for t in vocab.get("added_tokens", [])})
    return (names[ids[0]], ids) if ids[0] in names else None


# --- the built-in writer ------------------------------------------------------------
def write_builtin(src: Path, dest: Path, outtype: str, name: str = "loop export") -> None:
    """llama-architecture HF folder -> GGUF through the `gguf` package."""
    import gguf

    cfg = json.loads((src / "config.json").read_text())
    _check_supported(cfg, src)
    tmp = dest.with_name(dest.name + ".part")
    w = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    w.add_name(name)
    _write_hparams(w, cfg, outtype)
    _write_tokenizer(w, src, cfg)
    _write_tensors(w, src, cfg, outtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(dest)


def _check_supported(cfg: dict, src: Path) -> None:
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    problems = []
    if cfg.get("model_type") != "llama":
        problems.append(f"architecture {cfg.get('model_type')!r} (only 'llama')")
    if rope.get("rope_type", "default") != "default":
        problems.append(f"rope scaling {rope.get('rope_type')!r}")
    tj = json.loads((src / "tokenizer.json").read_text()) if (src / "tokenizer.json").is_file() else {}
    if _pre_name(tj) is None:
        problems.append("a tokenizer that is not byte-level BPE with the GPT-2 pre-tokenizer")
    if problems:
        raise ExportError(f"the built-in GGUF writer cannot convert {src}: {'; '.join(problems)}. {HOW_TO_GET}")


def _pre_name(tj: dict) -> str | None:
    """llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer.json, or None (unsupported)."""
    pre, model = tj.get("pre_tokenizer") or {}, tj.get("model") or {}
    norm = tj.get("normalizer") or {}
    if model.get("type") != "BPE" or (norm and norm != {"type": "Sequence", "normalizers": []}):
        return None
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    last = parts[-1] if parts else {}
    level_ok = last.get("type") == "ByteLevel" and last.get("use_regex", True) and not last.get("add_prefix_space")
    if level_ok and kinds == ["ByteLevel"]:
        return "gpt-2"
    if level_ok and kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"  # llama.cpp: every digit alone, then the GPT-2 regex
    return None


def _write_hparams(w, cfg: dict, outtype: str) -> None:
    import gguf

    heads = cfg["num_attention_heads"]
    rope = cfg.get("rope_parameters") or {}
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(cfg.get("num_key_value_heads") or heads)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    w.add_type(gguf.GGUFType.MODEL)
    w.add_rope_dimension_count(head_dim)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_freq_base(float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    ftype = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0"}[outtype]
    w.add_file_type(getattr(gguf.LlamaFileType, ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _write_tokenizer(w, src: Path, cfg: dict) -> None:
    """gpt2-model vocab: tokens by id, special added tokens as CONTROL, merges and ids via SpecialVocab."""
    import gguf
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src)
    vocab = {i: t for t, i in tok.get_vocab().items()}
    added = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(cfg["vocab_size"]):
        if i not in vocab:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(vocab[i])
            types.append(
                gguf.TokenType.NORMAL
                if i not in added
                else gguf.TokenType.CONTROL
                if added[i].special
                else gguf.TokenType.USER_DEFINED
            )
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(_pre_name(json.loads((src / "tokenizer.json").read_text())))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_add_space_prefix(bool(getattr(tok, "add_prefix_space", False)))
    special = gguf.SpecialVocab(src, load_merges=True, n_vocab=len(tokens))
    if tok.chat_template and not special.chat_template:
        special.chat_template = tok.chat_template
    ids = tok("x")["input_ids"]  # what the HF tokenizer adds is what llama.cpp should add
    special.add_special_token.setdefault("bos", tok.bos_token_id is not None and ids[:1] == [tok.bos_token_id])
    special.add_special_token.setdefault("eos", tok.eos_token_id is not None and ids[-1:] == [tok.eos_token_id])
    special.add_to_gguf(w, quiet=True)


def _write_tensors(w, src: Path, cfg: dict, outtype: str) -> None:
    import gguf
    from safetensors import safe_open

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg["num_hidden_layers"])
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    for f in sorted(src.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():
                if key.endswith("rotary_emb.inv_freq"):
                    continue
                name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise ExportError(f"built-in GGUF writer: no GGUF name for tensor {key!r}")
                data = sf.get_tensor(key).float().numpy()
                if key.endswith("q_proj.weight"):
                    data = _permute(data, heads)
                elif key.endswith("k_proj.weight"):
                    data = _permute(data, kv)
                _add_tensor(w, name, data, outtype)


def _permute(w, n_head: int):
    """llama.cpp's row order for q/k (undoes the HF rotary layout; transformers reverses it on load)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _add_tensor(w, name: str, data, outtype: str) -> None:
    import gguf
    import numpy as np

    Q = gguf.GGMLQuantizationType
    if data.ndim == 1 or outtype == "f32":
        w.add_tensor(name, data.astype(np.float32))
        return
    qtype = {"f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}[outtype]
    if qtype == Q.Q8_0 and data.shape[-1] % gguf.GGML_QUANT_SIZES[Q.Q8_0][0]:
        qtype = Q.F16
    if qtype == Q.F16:
        w.add_tensor(name, data.astype(np.float16))
    else:
        w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
