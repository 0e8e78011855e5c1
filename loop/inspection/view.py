"""Rendering for `loop inspect`: rich tables/panels and the accuracy curve.

Contract: every `render_*` takes exactly what the matching `loop.inspection` function
returns and only prints (to stdout); `curve_png` writes one PNG with matplotlib,
which is optional: without it, a clear InspectError says what to install.
"""

from __future__ import annotations

import json
from collections.abc import Set as AbstractSet
from pathlib import Path

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from loop.inspection import InspectError

out = Console()  # stdout: tables are the command's output (progress goes to stderr)
BAR_WIDTH = 40


def pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def num(v) -> str:
    return "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def short(v, n: int = 10) -> str:
    return "" if v is None else str(v)[:n]


WRAP = {
    "question",
    "value",
    "sample",
    "problem",
    "rejected (reason n)",
}  # long text columns wrap; the rest are cut with an ellipsis


def _table(
    title: str | None,
    cols: list[str],
    rows: list[list[str]],
    right: AbstractSet[str] = frozenset(),
    compact: bool = False,
    wrap: AbstractSet[str] = WRAP,
) -> Table:
    t = Table(title=title, box=box.SIMPLE_HEAD, padding=0, pad_edge=False) if compact else Table(title=title)
    for c in cols:
        t.add_column(
            c,
            justify="right" if c in right else "left",
            overflow="fold" if c in wrap else "ellipsis",
            no_wrap=c not in wrap,
        )
    for r in rows:
        t.add_row(*r)
    return t


def render_summary(s: dict) -> None:
    if s.get("run_id") is None:
        out.print(f"store {s['store']}: no runs yet (schema v{s['schema_version']})")
        return
    writer = s.get("writer")
    unfinished = (
        ", ".join(f"round {u['round']} {u['stage']} ({u['status']}, attempt {u['attempts']})" for u in s["unfinished"])
        or "none"
    )
    items = [
        ("run", s["run_id"]),
        ("created", s["created_at"]),
        ("loop version", s["loop_version"]),
        ("store", f"{s['store']} ({s['store_bytes'] / 1e6:.1f} MB, schema v{s['schema_version']})"),
        ("writer", f"pid {writer['pid']} on {writer['host']} since {writer['since']}" if writer else "none"),
        ("rounds done", f"{s['rounds_done']} (last started: {num(s['last_round'])})"),
        ("unfinished steps", unfinished),
        ("problems", num(s["problems"])),
        ("samples", f"{s['samples']} ({s['verified']} verified, {pct(s['verified_frac']) or '-'} % of judged)"),
        ("problems solved", num(s["problems_solved"])),
        ("mean reward", num(s["mean_reward"])),
        ("trained models", num(s["trained_models"])),
        ("current model", short(s["current_model"], 12)),
        (
            "held-out accuracy",
            f"baseline {pct(s['baseline_accuracy'])} %  latest {pct(s['latest_accuracy'])} %  "
            f"best {pct(s['best_accuracy'])} %",
        ),
    ]
    t = Table(show_header=False, title="summary")
    t.add_column(style="bold")
    t.add_column()
    for k, v in items:
        t.add_row(k, str(v))
    out.print(t)


KEPT = {True: "yes", False: "no", None: ""}  # the evaluation gate's verdict on the round's model


def render_rounds(data: dict) -> None:
    """Fits 80 columns (a plain `make demo` log): compact box, short headers."""
    cols = [
        "round",
        "problems",
        "samples",
        "verified%",
        "reward",
        "solved",
        "SFT ex",
        "acc%",
        "format%",
        "kept",
        "model",
    ]
    rows = [
        [
            str(r["round"]),
            str(r["problems"]),
            str(r["samples"]),
            pct(r["verified_frac"]),
            "" if r["mean_reward"] is None else f"{r['mean_reward']:.2f}",
            num(r["solved"]),
            num(r["train_examples"]),
            pct(r["heldout_accuracy"]),
            pct(r["format_rate"]),
            KEPT[r.get("accepted")],
            short(r["model_version"], 6),
        ]
        for r in data["rounds"]
    ]
    out.print(
        _table(
            f"run {data['run_id']}\nacc = held-out accuracy (round 0: before training); "
            "kept = the evaluation gate kept the round's model",
            cols,
            rows,
            right=set(cols) - {"kept", "model"},
            compact=True,
        )
    )


def render_problems(rows: list[dict]) -> None:
    """Readable at 80 columns: ids cut to 8 characters (a unique prefix in practice; --json has them
    whole), one line per problem, the question cut with an ellipsis to what the terminal leaves."""
    cols = ["problem", "source", "lvl", "question", "answer", "rounds", "judged", "ok", "pass %"]
    body = [
        [
            _cut(r["problem_id"], 8, ""),
            _cut(r["source"], 10),
            num(r["level"]),
            _one_line(r["question"]),
            _cut(r["answer"], 10),
            f"{r['first_round']}-{r['last_round']}",
            str(r["judged"]),
            str(r["verified"]),
            pct(r["pass_rate"]),
        ]
        for r in rows
    ]
    q = cols.index("question")
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    room = max(12, out.width - sum(w for i, w in enumerate(widths) if i != q) - (len(cols) - 1) - 4)
    for b in body:
        b[q] = _cut(b[q], room)
    out.print(
        _table(
            f"{len(rows)} problems", cols, body, right={"lvl", "judged", "ok", "pass %"}, compact=True, wrap=frozenset()
        )
    )


def _one_line(text: str | None) -> str:
    return " ".join(str(text or "").split())


def _cut(text: str | None, n: int, mark: str = "…") -> str:
    t = _one_line(text)
    return t if len(t) <= n else t[: n - len(mark)] + mark


def render_samples(rows: list[dict]) -> None:
    if not rows:
        out.print("no samples match")
    for r in rows:
        title = (
            f"{r['sample_id']}  round {r['round']}  verified={r['verified']}  "
            f"total={num(r['reward_total'])}  adv={num(r['advantage'])}"
        )
        body = (
            f"[bold]Q:[/] {r['question']}  [bold]gold:[/] {r['answer']}  [bold]got:[/] {r['extracted']}\n\n"
            f"{r['completion']}\n\n[dim]{json.dumps(r['rewards'])}[/]"
        )
        out.print(Panel(body, title=title, expand=False))


def render_show(r: dict) -> None:
    sp = r.get("sampling") or {}
    prov = [
        ("sample", r["sample_id"]),
        ("run / round / idx", f"{r['run_id']} / {r['round']} / {r['idx']}"),
        ("model", f"{r['model_version']} (parent {r['model_parent'] or 'none: base'})"),
        (
            "sampler",
            f"{r['backend']}: temperature {sp.get('temperature')}, top_p {sp.get('top_p')}, "
            f"seed {sp.get('seed')}, max_new_tokens {sp.get('max_new_tokens')}, n {sp.get('n')}",
        ),
        ("prompt template", r["prompt_version"]),
        ("verifier", r["verifier_version"]),
        ("loop version", r["loop_version"]),
        ("created", r["created_at"]),
        ("tokens", f"prompt {r['prompt_tokens']}, completion {r['completion_tokens']} ({r['finish_reason']})"),
    ]
    meta = r.get("problem_meta") or {}
    if isinstance(meta, dict) and meta.get("image"):  # a vision problem: where its pixels are
        prov.append(("image", f"{meta['image']} (sha256 {meta.get('image_sha256')})"))
    out.print(_table("provenance", ["field", "value"], [[k, str(v)] for k, v in prov]))
    out.print(
        Panel(
            f"{r['question']}\n\n[bold]gold:[/] {r['answer']}   [dim]{r['source']} {r['kind']} "
            f"level {r['level']}  problem {r['problem_id']}[/]",
            title="problem",
            expand=False,
        )
    )
    out.print(Panel(r["completion"] or "", title=f"completion  (extracted: {r['extracted']})", expand=False))
    rewards = [[k, num(v) if v is not None else "cannot judge"] for k, v in (r.get("rewards") or {}).items()]
    rewards += [["total", num(r["reward_total"])], ["advantage", num(r["advantage"])], ["verified", str(r["verified"])]]
    out.print(_table("rewards", ["reward", "value"], rewards, right={"value"}))
    lineage = [
        [str(m["depth"]), m["model_version"] or "", m["kind"] or "base", num(m["round"]), m["data_hash"] or ""]
        for m in r["lineage"]
    ]  # the base model has no `models` row
    out.print(_table("model lineage (0 = this sample's model)", ["depth", "model", "kind", "round", "data"], lineage))
    group = [
        [
            g["sample_id"] + (" *" if g["sample_id"] == r["sample_id"] else ""),
            str(g["idx"]),
            str(g["verified"]),
            num(g["reward_total"]),
            num(g["advantage"]),
            str(g["extracted"]),
        ]
        for g in r["group"]
    ]
    out.print(_table("GRPO group", ["sample", "idx", "verified", "total", "advantage", "extracted"], group))


def render_sql(data: dict) -> None:
    rows = [["NULL" if v is None else str(v) for v in row] for row in data["rows"]]
    title = f"{len(rows)} rows" + (" (truncated: raise --limit)" if data["truncated"] else "")
    out.print(_table(title, data["columns"], rows))


def render_curve(data: dict) -> None:
    pts = data["points"]
    if not pts:
        out.print("no evaluations yet")
        return
    out.print(f"[bold]held-out accuracy[/] per round, run {data['run_id']} (round 0 = before training)")
    width = max(10, min(BAR_WIDTH, out.width - 40))
    for p in pts:
        filled = round(width * (p["accuracy"] or 0))
        bar = "█" * filled + "·" * (width - filled)
        out.print(
            f"round {p['round']:>3} │{bar}│ {pct(p['accuracy']):>5} % ({p['correct']}/{p['n']}) "
            f"{short(p['model_version'], 8)}",
            highlight=False,
            soft_wrap=True,
        )


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display); InspectError without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InspectError(
            "--png needs matplotlib, which is not installed (pip install matplotlib); "
            "the terminal tables work without it"
        ) from None
    return plt


def curve_png(data: dict, path: str | Path) -> Path:
    plt = pyplot()
    import matplotlib.ticker

    pts = data["points"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p["round"] for p in pts], [100 * (p["accuracy"] or 0) for p in pts], marker="o")
    ax.set(
        xlabel="round (0 = before training)",
        ylabel="held-out accuracy (%)",
        ylim=(0, 100),
        title=f"run {data['run_id']}",
    )
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def render_proposer(data: dict) -> None:
    """`loop inspect proposer`: one row per round; the rejections as `reason n`, most first."""
    if not data["rounds"]:
        out.print("no proposals in this run (no `kind: self` source, or a `kind: code` one without model_count)")
        return
    cols = ["round", "drawn", "kept", "kept %", "problems", "sampled", "learnability", "rejected (reason n)"]
    body = [
        [
            str(r["round"]),
            str(r["drawn"]),
            str(r["kept"]),
            pct(r["kept_share"]),
            str(r["problems"]),
            str(r["sampled"]),
            num(r["mean_learnability"]),
            ", ".join(f"{k} {v}" for k, v in r["rejected"].items()),
        ]
        for r in data["rounds"]
    ]
    title = (
        f"proposer, run {data['run_id']}\nproblems = produced by kept proposals; learnability = their mean "
        "learnability(pass rate) in the round, over those sampled"
    )
    out.print(_table(title, cols, body, right=set(cols[:-1]), compact=True))


def render_sft(rows: list[dict]) -> None:
    """`loop inspect sft`: one panel per instruction-SFT model."""
    if not rows:
        out.print("no `loop sft` models in this run")
    for r in rows:
        m, c = r["metrics"], r["config"]
        files = "; ".join(
            f"{Path(f['path']).name} ({f['encoding']}, {f['rows']} rows, sha256 {f['sha256'][:12]})"
            for d in c.get("data", [])
            for f in d["files"]
        )
        lines = [
            f"model {r['model_version']}  round {r['round']}  template {c.get('template')}  "
            f"steps {m.get('steps')}  train rows {c.get('train_rows')}  held-out rows {c.get('heldout_rows')}",
            f"data: {files}",
            f"held-out loss {num(m.get('heldout_loss_before'))} -> {num(m.get('heldout_loss_after'))}  "
            f"(perplexity {num(m.get('heldout_ppl_before'))} -> {num(m.get('heldout_ppl_after'))})",
        ]
        for p in m.get("prompts", []):
            lines += [
                f"\n[bold]prompt[/] {p['prompt']}",
                f"[dim]before[/] {p['before']}",
                f"[green]after[/] {p['after']}",
            ]
        out.print(Panel("\n".join(lines), title=f"loop sft {short(r['model_version'])}"))


def render_sets(rows: list[dict]) -> None:
    """`loop inspect sets`: one row per round, one accuracy column per evaluation set."""
    names = list(dict.fromkeys(r["split"] for r in rows))
    by_round: dict[int, dict[str, dict]] = {}
    for r in rows:
        by_round.setdefault(r["round"], {})[r["split"]] = r
    body = [[str(k)] + [_set_cell(v[n]) if n in v else "" for n in names] for k, v in sorted(by_round.items())]
    title = "held-out accuracy per set (greedy pass@1; pass@k/maj@k from sampled k; heldout = the gated set)"
    out.print(_table(title, ["round", *names], body, right=set(names)))


def _set_cell(row: dict) -> str:
    """`35.0 % of 20`, then each sampled metric (`pass@4 50.0 maj@4 40.0`) of a set with k."""
    cell = f"{pct(row['accuracy'])} % of {row['n']}"
    m = row.get("metrics") or {}
    extra = " ".join(f"{k} {pct(v)}" for k, v in m.items() if k.startswith(("pass@", "maj@")))
    return f"{cell}\n{extra}" if extra else cell


def render_eval(data: dict) -> None:
    """`loop eval`: a row per set (plain) or per (set, waits, budget) point (a budget sweep)."""
    title = f"model {short(data['model_version'], 12)} (run {data['run_id']})"
    if "points" in data:
        cols = ["set", "waits", "budget", "accuracy %", "tokens", "budget hit %", "waits used"]
        body = [
            [
                p["set"],
                str(p["waits"]),
                "none" if p["budget"] is None else str(p["budget"]),
                f"{pct(p['accuracy'])} of {p['n']}",
                f"{p['tokens']:.1f}",
                pct(p["budget_hit"]),
                f"{p['waits_used']:.2f}",
            ]
            for p in data["points"]
        ]
        out.print(_table(f"budget sweep, {title}", cols, body, right=set(cols[1:])))
        return
    ks = list(dict.fromkeys(k for s in data["sets"] for k in (s.get("metrics") or {}) if "@" in k))
    cols = ["set", "greedy pass@1 %", "format %", *ks]
    body = [
        [s["set"], f"{pct(s['accuracy'])} of {s['n']}", pct(s["format_rate"])]
        + [pct((s.get("metrics") or {}).get(k)) for k in ks]
        for s in data["sets"]
    ]
    out.print(_table(f"evaluation, {title}", cols, body, right=set(cols[1:])))
