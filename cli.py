"""`loop` command line: a thin typer layer over the library.

Heavy modules (torch, transformers, duckdb) are imported inside commands so
`loop --help` stays instant. Library errors with a clear message (bad config,
seed file, model, store) are printed without a traceback and exit with code 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="loop: a self-improving RL data-synthesis daemon.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
inspect_app = typer.Typer(help="Query what the loop has stored.", invoke_without_command=True)
app.add_typer(inspect_app, name="inspect")

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (default: built-in defaults).")
SetOpt = typer.Option(None, "--set", "-s", help="Override a config key: --set sample.group_size=8 (repeatable).")


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(2)


def _known_errors() -> tuple[type[BaseException], ...]:
    from loop.config import ConfigError
    from loop.models import ModelError
    from loop.propose import ProposeError
    from loop.sample import SamplerError
    from loop.daemon import AlreadyRunning, DaemonError
    from store.db import StoreError
    return (ConfigError, ModelError, ProposeError, SamplerError, StoreError, ValueError, AlreadyRunning,
            DaemonError)


def _load(config: Optional[Path], sets: Optional[list[str]]):
    from loop.config import ConfigError, load_config
    try:
        return load_config(config, sets or [])
    except ConfigError as e:
        _fail(str(e))


@app.command()
def start(rounds: Optional[int] = typer.Option(None, "--rounds", "-n", min=0,
                                              help="Rounds this run has when done (default 5; with --daemon or --every: no limit)."),
          daemon: bool = typer.Option(False, "--daemon", help="Detach and run on a schedule (pid file, loop.log, status.json in the run directory)."),
          every: Optional[str] = typer.Option(None, "--every", help="Start a round every INTERVAL: 45s, 30m, 2h (--daemon default: daemon.every)."),
          config: Optional[Path] = ConfigOpt, set: Optional[list[str]] = SetOpt) -> None:
    """Run (or resume) the loop: propose, sample, verify, store, train, evaluate.

    Ctrl-C or SIGTERM stops after the current stage; a second Ctrl-C stops at once."""
    cfg = _load(config, set)
    from loop import daemon as lib
    if daemon:
        st = _call(lib.start_daemon, cfg, rounds, every or cfg.daemon.every)
        typer.echo(f"started daemon pid {st['pid']} in {cfg.run.dir} (log {st.get('log')}); "
                   f"`loop status` / `loop stop` with the same --config/--set")
        return
    final = _call(lib.serve, cfg, 5 if rounds is None and every is None else rounds, every)
    if final.get("state") == "stopped":
        typer.echo(f"stopped ({final.get('finished_rounds')} rounds done); the same command resumes", err=True)
    if final.get("run_id"):
        _print_rounds(cfg, None, as_json=False, run_id=final["run_id"])


def _call(fn, *args, **kw):
    """A library call whose known errors become a clear message and exit code 2."""
    try:
        return fn(*args, **kw)
    except _known_errors() as e:
        _fail(str(e))


@app.command()
def status(config: Optional[Path] = ConfigOpt, set: Optional[list[str]] = SetOpt,
           as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """Is a loop running in the run directory? pid, round and stage, last round's numbers, next round."""
    from loop import daemon as lib
    st = _call(lib.status, _load(config, set))
    typer.echo(json.dumps(st, default=str, indent=2) if as_json else lib.describe(st))


@app.command()
def stop(config: Optional[Path] = ConfigOpt, set: Optional[list[str]] = SetOpt,
         now: bool = typer.Option(False, "--now", help="Kill at once (SIGKILL, the training job too); the next start resumes."),
         timeout: float = typer.Option(600.0, "--timeout", min=0, help="Seconds to wait for a graceful stop.")) -> None:
    """Stop the loop running in the run directory: after its current stage commits (or --now); waits."""
    from loop import daemon as lib
    res = _call(lib.stop, _load(config, set), now=now, timeout=timeout)
    if not res["was_running"]:
        typer.echo(f"no loop running in {res['run_dir']}")
    elif res["gone"]:
        typer.echo(f"stopped pid {res['pid']} in {res['seconds']}s (state {res['state']}, "
                   f"rounds done {res['finished_rounds']})")
    else:
        typer.secho(f"pid {res['pid']} still running after {res['seconds']}s (finishing round {res['round']} "
                    f"stage {res['stage']}); `loop stop --now` kills it", fg="yellow", err=True)
        raise typer.Exit(1)


def _open_store(config: Optional[Path], sets: Optional[list[str]], store: Optional[Path]):
    from store.db import Store, StoreError
    path = store or _load(config, sets).store_path
    try:
        return Store(path, read_only=True)
    except StoreError as e:
        _fail(str(e))


def _print_rounds(cfg, store_path, as_json: bool, run_id: str | None = None) -> None:
    from store import queries
    from store.db import Store
    with Store(store_path or cfg.store_path, read_only=True) as st:
        rid = run_id or queries.latest_run(st)
        rows = queries.rounds(st, rid) if rid else []
    if as_json:
        print(json.dumps({"run_id": rid, "rounds": rows}, default=str, indent=2))
        return
    from rich.table import Table
    from loop.progress import console
    t = Table(title=f"run {rid}")
    for col in ("round", "problems", "samples", "verified %", "mean reward", "solved", "train ex",
                "held-out acc", "format %", "model"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(str(r["round"]), str(r["problems"]), str(r["samples"]), _pct(r["verified_frac"]),
                  _num(r["mean_reward"]), _num(r["solved"]), _num(r["train_examples"]),
                  _pct(r["heldout_accuracy"]), _pct(r["format_rate"]), (r["model_version"] or "")[:8])
    console.print(t)


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def _num(v) -> str:
    return "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


StoreOpt = typer.Option(None, "--store", help="DuckDB store file (default: from the config).")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


@inspect_app.callback()
def inspect(ctx: typer.Context, config: Optional[Path] = ConfigOpt, set: Optional[list[str]] = SetOpt,
            store: Optional[Path] = StoreOpt, as_json: bool = JsonOpt) -> None:
    """Per-round table: problems, samples, verified %, mean reward, held-out accuracy."""
    ctx.obj = {"config": config, "set": set, "store": store}
    if ctx.invoked_subcommand is None:
        st = _open_store(config, set, store)
        path = st.path
        st.close()
        _print_rounds(None, path, as_json)


@inspect_app.command("samples")
def inspect_samples(ctx: typer.Context, verified: bool = typer.Option(False, "--verified", help="Only verified."),
                    round: Optional[int] = typer.Option(None, "--round", help="Only this round."),
                    problem: Optional[str] = typer.Option(None, "--problem", help="Only this problem id."),
                    limit: int = typer.Option(10, "--limit", min=1), as_json: bool = JsonOpt) -> None:
    """Print stored chains with their rewards."""
    from store import queries
    o = ctx.obj or {}
    with _open_store(o.get("config"), o.get("set"), o.get("store")) as st:
        rows = queries.samples(st, queries.latest_run(st), verified=True if verified else None,
                               round=round, problem_id=problem, limit=limit)
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    from rich.panel import Panel
    from loop.progress import console
    for r in rows:
        title = (f"{r['sample_id']}  round {r['round']}  verified={r['verified']}  "
                 f"total={_num(r['reward_total'])}  adv={_num(r['advantage'])}")
        body = f"[bold]Q:[/] {r['question']}  [bold]gold:[/] {r['answer']}  [bold]got:[/] {r['extracted']}\n\n{r['completion']}\n\n[dim]{r['rewards']}[/]"
        console.print(Panel(body, title=title, expand=False))


# --- loop export model (library: loop/export.py) ----------------------------------------
export_app = typer.Typer(help="Export from the store: models (`export model`).", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("model")
def export_model_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Output directory (absent or empty unless --force)."),
        fmt: str = typer.Option("merged16", "--format", "-f", help="lora | merged16 | gguf."),
        round: Optional[int] = typer.Option(None, "--round", help="The model trained in this round."),
        model_version: Optional[str] = typer.Option(None, "--model-version", help="A model version (or unique prefix)."),
        run: Optional[str] = typer.Option(None, "--run", help="Run id (default: the store's latest run)."),
        dtype: str = typer.Option("bfloat16", "--dtype", help="merged16 weights: bfloat16 | float16 | float32."),
        outtype: str = typer.Option("f16", "--outtype", help="gguf tensors: f16 | bf16 | q8_0 | f32."),
        converter: Optional[str] = typer.Option(None, "--converter", help="llama.cpp convert_hf_to_gguf.py path, "
                                                "or 'builtin' (default: $LOOP_LLAMA_CPP_CONVERT, then PATH, then builtin)."),
        force: bool = typer.Option(False, "--force", help="Replace a non-empty --out directory."),
        config: Optional[Path] = ConfigOpt, set: Optional[list[str]] = SetOpt,
        store: Optional[Path] = typer.Option(None, "--store", help="DuckDB store file (default: from the config).")) -> None:
    """Export a model version (default: the current accepted model) with a lineage model card."""
    from loop.export import ExportError, export_model
    path = store or _load(config, set).store_path
    try:
        lin = export_model(path, out, fmt, round=round, version=model_version, run_id=run, dtype=dtype,
                           outtype=outtype, converter=converter, force=force)
    except (ExportError, *_known_errors()) as e:
        _fail(str(e))
    m = lin["model"]
    typer.echo(f"exported model {m['version']} (round {m['round']}, run {m['run_id']}) as {fmt} to {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
