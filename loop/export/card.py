"""The model card of an export: README.md (for people, with Hugging Face hub metadata) and
lineage.json (for programs): base model, each ancestor version, the held-out curve, the files
and how to load them in the format's consumer."""

from __future__ import annotations

import json
from pathlib import Path

LIBRARY = {"lora": "peft", "merged16": "transformers", "merged4": "transformers", "gguf": "gguf", "ollama": "gguf"}


def write_card(dest: Path, lin: dict) -> None:
    """README.md (for people) and lineage.json (for programs) into `dest`."""
    (dest / "lineage.json").write_text(json.dumps(lin, indent=2, default=str) + "\n")
    (dest / "README.md").write_text(card(lin))


def card(lin: dict) -> str:
    m, b, ex, run = lin["model"], lin["base"], lin["export"], lin["run"]
    lib = LIBRARY[ex["format"]]
    via = ex.get("writer") and f"via {ex['writer']}"
    how = ex.get("quantization") or ex.get("dtype") or " ".join(x for x in (ex.get("outtype"), via) if x)
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
    if ex["format"] == "merged4":
        return (
            "from transformers import AutoModelForCausalLM, AutoTokenizer  # needs bitsandbytes\n"
            "model = AutoModelForCausalLM.from_pretrained('THIS_DIR')  # 4-bit: its quantization_config\n"
            "tok = AutoTokenizer.from_pretrained('THIS_DIR')"
        )
    if ex["format"] == "merged16":
        return (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "model = AutoModelForCausalLM.from_pretrained('THIS_DIR')\n"
            "tok = AutoTokenizer.from_pretrained('THIS_DIR')"
        )
    f = f"model-{ex['outtype']}.gguf"
    if ex["format"] == "ollama":
        return f"# ollama create my-model -f THIS_DIR/Modelfile && ollama run my-model\n# llama.cpp: THIS_DIR/{f}"
    return (
        f"# llama.cpp: llama-cli -m THIS_DIR/{f}\nfrom transformers import AutoModelForCausalLM\n"
        f"model = AutoModelForCausalLM.from_pretrained('THIS_DIR', gguf_file={f!r})"
    )


def _s(v) -> str:
    return "" if v is None else str(v)


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}%"
