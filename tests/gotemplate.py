"""A small Go text/template subset, to render an Ollama Modelfile's TEMPLATE in tests.

Supported: text; `{{ .Field }}` and `{{ $.Field }}`; `{{ range .Messages }}` ... `{{ end }}`;
`{{ if COND }}` / `{{ else if COND }}` / `{{ else }}` / `{{ end }}` with COND one of `.Field`,
`eq .Field "lit"`, `not .Field`; string literals `{{ "text" }}`; trim markers `{{-` and `-}}`
(they remove the whitespace beside them, as Go does). Anything else raises ValueError, so a
template using more than this subset fails its test rather than rendering wrongly.
"""
from __future__ import annotations

import json
import re

TOKEN = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)


def _lex(src: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    for m in TOKEN.finditer(src):
        text = src[pos:m.start()]
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        out.append(("text", text))
        out.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = src[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\r\n"))
    out.append(("text", src[pos:]))
    return [t for t in out if t != ("text", "")]


def _parse(tokens: list, i: int, stop: tuple) -> tuple[list, int, str | None]:
    """Nodes until an action in `stop` (returned with the index after it)."""
    nodes: list = []
    while i < len(tokens):
        kind, val = tokens[i]
        if kind == "text":
            nodes.append(("text", val))
            i += 1
        elif val in stop or (val.startswith("else") and "else" in stop):
            return nodes, i + 1, val
        elif val.startswith("range "):
            body, i, _ = _parse(tokens, i + 1, ("end",))
            nodes.append(("range", val[6:].strip(), body))
        elif val.startswith("if "):
            node, i = _parse_if(tokens, val[3:].strip(), i + 1)
            nodes.append(node)
        else:
            nodes.append(("value", val))
            i += 1
    if stop:
        raise ValueError(f"template: missing {{{{ {stop[0]} }}}}")
    return nodes, i, None


def _parse_if(tokens: list, cond: str, i: int) -> tuple[tuple, int]:
    branches = []
    while True:
        body, i, ended = _parse(tokens, i, ("end", "else"))
        branches.append((cond, body))
        if ended == "end":
            return ("if", branches), i
        assert ended is not None
        rest = ended[4:].strip()
        if rest.startswith("if "):
            cond = rest[3:].strip()
        elif rest == "":
            cond = "true"
        else:
            raise ValueError(f"template: unsupported {{{{ {ended} }}}}")


def _value(expr: str, dot: dict, root: dict):
    if expr.startswith('"'):
        return json.loads(expr)
    if expr == "true":
        return True
    if expr.startswith("$."):
        return root[expr[2:]]
    if expr.startswith(".") and re.fullmatch(r"\.\w+", expr):
        return dot[expr[1:]]
    raise ValueError(f"template: unsupported expression {expr!r}")


def _cond(expr: str, dot: dict, root: dict) -> bool:
    parts = re.findall(r'"(?:[^"\\]|\\.)*"|\S+', expr)
    if parts[0] == "eq" and len(parts) == 3:
        return _value(parts[1], dot, root) == _value(parts[2], dot, root)
    if parts[0] == "not" and len(parts) == 2:
        return not _value(parts[1], dot, root)
    if len(parts) == 1:
        return bool(_value(parts[0], dot, root))
    raise ValueError(f"template: unsupported condition {expr!r}")


def _run(nodes: list, dot: dict, root: dict) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "value":
            out.append(str(_value(node[1], dot, root)))
        elif node[0] == "range":
            out += [_run(node[2], item, root) for item in _value(node[1], dot, root)]
        else:
            body = next((b for c, b in node[1] if _cond(c, dot, root)), [])
            out.append(_run(body, dot, root))
    return "".join(out)


def render(template: str, data: dict) -> str:
    """Execute `template` on `data` (e.g. {"Messages": [{"Role": ..., "Content": ...}], "System": ...})."""
    nodes, _, _ = _parse(_lex(template), 0, ())
    return _run(nodes, data, data)


def modelfile(text: str) -> dict:
    """A Modelfile's commands: {"FROM": str, "TEMPLATE": str, "SYSTEM": str, "PARAMETER": [(k, v)]}."""
    out: dict = {"PARAMETER": []}
    for m in re.finditer(r'^(\w+)\s+(?:"""(.*?)"""|(.*?))\s*$', text, re.S | re.M):
        cmd, val = m.group(1).upper(), m.group(2) if m.group(2) is not None else m.group(3)
        if cmd == "PARAMETER":
            key, _, v = val.partition(" ")
            out["PARAMETER"].append((key, json.loads(v) if v.startswith('"') else v))
        else:
            out[cmd] = val
    return out


def ollama_messages(messages: list[dict], system: str | None) -> list[dict]:
    """Ollama's chat request as its template sees it: SYSTEM first when no system message is given."""
    msgs = [{"Role": m["role"], "Content": m["content"]} for m in messages]
    if system is not None and not any(m["Role"] == "system" for m in msgs):
        msgs.insert(0, {"Role": "system", "Content": system})
    return msgs
