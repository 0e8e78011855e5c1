"""Ollama export (`loop export model --format ollama`): the GGUF plus a `Modelfile`.

Contract:
- The Modelfile has `FROM ./<the gguf>`, a `TEMPLATE` in Go-template syntax over
  `.Messages` (Ollama's chat form), one `PARAMETER stop` per token that ends a turn (the
  tokenizer's eos, generation_config's eos ids, ChatML's <|im_end|> where the vocabulary
  has it), and `SYSTEM` (the run's training system prompt; else the default system text
  the chat template inserts when a conversation has none; else no SYSTEM line).
- The TEMPLATE comes from the model's own chat template, decomposed (`decompose`) into
  per-role blocks `prefix[role] + content + suffix[role]`, a leading text and the
  generation prompt, found by rendering conversations with marker contents. Before it is
  written it is checked: for fixed conversations (with and without a system message, one
  and several turns) the blocks, with Ollama's rule that SYSTEM is prepended when the
  conversation has no system message, reproduce the chat template's text exactly, the
  training prompt included. A template that is not of this form raises ExportError.
- Runs trained on the Alpaca prompt text (`instruct.template: alpaca`) raise ExportError:
  that prompt splits the user's text into instruction and input, which Go templates cannot.
"""

from __future__ import annotations

import json
from pathlib import Path

from loop.export.errors import ExportError

ROLES = ("system", "user", "assistant")
MARK = {r: f"\x01{r.upper()}-{i}\x02" for i, r in enumerate(ROLES)}
CHECKS = [  # fixed conversations the derived template must render exactly
    [("system", "Be brief."), ("user", "What is 47 + 38?")],
    [("user", "What is 47 + 38?")],
    [("system", "S"), ("user", "a"), ("assistant", "b"), ("user", "c\n\nd")],
    [("user", "hi"), ("assistant", "hello"), ("user", "bye")],
]


def _render(tok, convo: list[tuple[str, str]]) -> str:
    msgs = [{"role": r, "content": c} for r, c in convo]
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def _between(text: str, marks: list[str]) -> list[str]:
    """The texts before, between and after the marks (each must occur once, in order)."""
    out, pos = [], 0
    for m in marks:
        i = text.find(m, pos)
        if i < 0 or text.count(m) != 1:
            raise ExportError("the chat template does not render each message's content once, in order")
        out.append(text[pos:i])
        pos = i + len(m)
    return [*out, text[pos:]]


def decompose(tok) -> dict:
    """{lead, prefix{role}, suffix{role}, gen, default_system} from the tokenizer's chat template."""
    s, u, a = MARK["system"], MARK["user"], MARK["assistant"]
    u2 = "\x01USER-again\x02"
    seg = _between(_render(tok, [("system", s), ("user", u), ("assistant", a), ("user", u2)]), [s, u, a, u2])
    gen = _generation_prompt(tok, [("system", s), ("user", u)])
    _, sys_to_user, user_to_asst, asst_to_user, tail = seg
    if not tail.endswith(gen) or not user_to_asst.endswith(gen):
        raise ExportError("the chat template's generation prompt does not open the assistant's turn")
    user_suffix = tail.removesuffix(gen) if gen else tail
    asst_prefix = user_to_asst.removeprefix(user_suffix)
    asst_suffix = _common_prefix(asst_to_user, user_suffix)
    user_prefix = asst_to_user[len(asst_suffix) :]
    if not sys_to_user.endswith(user_prefix):
        raise ExportError("the chat template's user turn opens differently after a system message")
    blocks: dict = {
        "prefix": {"system": seg[0], "user": user_prefix, "assistant": asst_prefix},
        "suffix": {"system": sys_to_user.removesuffix(user_prefix), "user": user_suffix, "assistant": asst_suffix},
        "gen": gen,
    }
    blocks["lead"], blocks["prefix"]["system"], blocks["default_system"] = _lead_and_default(tok, blocks)
    return blocks


def _lead_and_default(tok, blocks: dict) -> tuple[str, str, str | None]:
    """(text before the first turn, the system turn's prefix, the system text the template
    inserts into a conversation without one or None), from a conversation without a system message."""
    u = MARK["user"]
    head = _render(tok, [("user", u)]).split(u, 1)[0]
    seg0, p_user, s_sys = blocks["prefix"]["system"], blocks["prefix"]["user"], blocks["suffix"]["system"]
    if not head.endswith(p_user):
        raise ExportError("the chat template opens a user turn differently without a system message")
    h = head[: len(head) - len(p_user)]
    if seg0.startswith(h):  # no default system turn: what precedes the first turn either way leads
        return h, seg0[len(h) :], None
    if h.startswith(seg0) and h.endswith(s_sys):  # a default system turn
        return "", seg0, h[len(seg0) : len(h) - len(s_sys)]
    raise ExportError("the chat template adds text before a conversation without a system message")


def _generation_prompt(tok, convo: list[tuple[str, str]]) -> str:
    """What add_generation_prompt adds to the rendered conversation."""
    msgs = [{"role": r, "content": c} for r, c in convo]
    plain = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    with_gen = _render(tok, convo)
    if not with_gen.startswith(plain):
        raise ExportError("the chat template's generation prompt changes the text before it")
    return with_gen[len(plain) :]


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def render_blocks(blocks: dict, convo: list[tuple[str, str]], system: str | None) -> str:
    """What Ollama's TEMPLATE renders for `convo` with SYSTEM `system` (prepended when absent)."""
    if system is not None and not any(r == "system" for r, _ in convo):
        convo = [("system", system), *convo]
    body = "".join(blocks["prefix"][r] + c + blocks["suffix"][r] for r, c in convo)
    return blocks["lead"] + body + blocks["gen"]


def check_blocks(tok, blocks: dict, system: str | None, training: list[dict]) -> None:
    """The blocks reproduce the chat template on CHECKS and on the training prompt (else ExportError)."""
    default = blocks["default_system"]
    cases = [*CHECKS, [(m["role"], m["content"]) for m in training]]
    for convo in cases:
        has_system = any(r == "system" for r, _ in convo)
        want_convo = convo if has_system or system is None else [("system", system), *convo]
        want = _render(tok, want_convo)
        got = render_blocks(blocks, convo, system if system is not None else default)
        if got != want:
            raise ExportError(
                f"cannot write an Ollama TEMPLATE for this chat template: for {convo!r} it renders "
                f"{want!r}, per-role blocks give {got!r}"
            )


def go_template(blocks: dict) -> str:
    """The Go template over .Messages: per role its prefix, content, suffix; then the generation
    prompt. No trim markers (`{{-`): every character outside the actions is the template's text."""
    branches = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{r}" }}}}'
        f"{_go_text(blocks['prefix'][r])}{{{{ .Content }}}}{_go_text(blocks['suffix'][r])}"
        for i, r in enumerate(ROLES)
    )
    body = f"{{{{ range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}"
    return _go_text(blocks["lead"]) + body + _go_text(blocks["gen"])


def _go_text(text: str) -> str:
    if "{{" in text or "}}" in text:
        return text.replace("{{", '{{ "{{" }}').replace("}}", '{{ "}}" }}')
    return text


def stop_tokens(folder: Path, tok) -> list[str]:
    """Texts of the tokens that end a turn: eos, generation_config's eos ids, ChatML's <|im_end|>."""
    ids = {tok.eos_token_id}
    gc = folder / "generation_config.json"
    if gc.is_file():
        eos = json.loads(gc.read_text()).get("eos_token_id")
        ids |= set([eos] if isinstance(eos, int) else eos or [])
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tok.unk_token_id:
        ids.add(im_end)
    return sorted({tok.convert_ids_to_tokens(i) for i in ids if i is not None})


def modelfile(gguf_name: str, template: str, stops: list[str], system: str | None) -> str:
    lines = [f"FROM ./{gguf_name}", "", f'TEMPLATE """{_triple(template)}"""', ""]
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in stops]
    if system is not None:
        lines += ["", f'SYSTEM """{_triple(system)}"""']
    return "\n".join(lines) + "\n"


def _triple(text: str) -> str:
    if '"""' in text:
        raise ExportError('a TEMPLATE or SYSTEM text contains """, which a Modelfile cannot quote')
    return text


def write_modelfile(merged: Path, dest: Path, gguf_name: str, prompt: dict) -> dict:
    """Write dest/Modelfile for `gguf_name` from the merged folder's tokenizer; `prompt` is
    {template: chat|alpaca, system: the training system prompt or None}."""
    from transformers import AutoTokenizer

    if prompt.get("template", "chat") != "chat":
        raise ExportError(
            "--format ollama: this model was trained on the Alpaca prompt text (instruct.template: alpaca), "
            "which an Ollama TEMPLATE cannot render; export --format gguf and prompt llama.cpp with that text"
        )
    tok = AutoTokenizer.from_pretrained(merged)
    if not tok.chat_template:
        raise ExportError(f"--format ollama: {merged} has no chat template to derive the TEMPLATE from")
    blocks = decompose(tok)
    system = prompt.get("system")
    training = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "Q"}]
    check_blocks(tok, blocks, system, training)
    system = system if system is not None else blocks["default_system"]
    stops = stop_tokens(merged, tok)
    (dest / "Modelfile").write_text(modelfile(gguf_name, go_template(blocks), stops, system), encoding="utf-8")
    return {"template": "chat", "system": system, "stop": stops}
