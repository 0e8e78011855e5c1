"""`loop` command line: a thin typer layer over the library.

Heavy modules (torch, transformers, duckdb) are imported inside commands so
`loop --help` stays instant. Library errors with a clear message (bad config,
seed file, model, store) are printed without a traceback and exit with code 2.
"""

from __future__ import annotations

import functools
import inspect as pyinspect
import json
from enum import Enum
from pathlib import Path

import typer

from loop import __version__

# rich_markup_mode=None: click's plain help, where a flag shows as `--verified` and a choice as
# `[lora|merged16|gguf]` (typer's rich panels print `--verified <bool>`)
PLAIN: dict = {"rich_markup_mode": None}
app = typer.Typer(
    help="loop: a self-improving RL data-synthesis daemon.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    **PLAIN,
)
inspect_app = typer.Typer(
    help="Query what the loop has stored (also while a run writes). Alone: the per-round "
    "table. -c/--set/--store/--run/--json work before or after the subcommand.\n\n"
    "Example: loop inspect --store runs/tiny/loop.duckdb samples --limit 3",
    invoke_without_command=True,
    **PLAIN,
)
app.add_typer(inspect_app, name="inspect")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loop {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print loop's version and exit."
    ),
) -> None:
    """loop: a self-improving RL data-synthesis daemon.

    Example: loop start --rounds 5 -c configs/tiny.yaml"""


# choices as Enums: typer lists them in the help and rejects anything else, naming the valid ones
SampleFormat = Enum("SampleFormat", {n: n for n in ("jsonl", "parquet", "hf", "trl-sft", "trl-grpo")}, type=str)  # type: ignore[misc]
ModelFormat = Enum("ModelFormat", {n: n for n in ("lora", "merged16", "merged4", "gguf", "ollama")}, type=str)  # type: ignore[misc]
DType = Enum("DType", {n: n for n in ("bfloat16", "float16", "float32")}, type=str)  # type: ignore[misc]
OutType = Enum(  # type: ignore[misc]
    "OutType", {n: n for n in ("f16", "bf16", "q8_0", "f32", "q4_k_m", "q5_k_m", "q6_k", "q4_0")}, type=str
)

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (default: built-in defaults).")
SetOpt = typer.Option(
    None, "--set", "-s", metavar="KEY=VALUE", help="Override a config key: --set sample.group_size=8 (repeatable)."
)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(2)


def _known_errors(*extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    """Errors a command reports as a clear message (exit 2): `extra` and the library's known ones."""
    from loop.config import ConfigError
    from loop.daemon import AlreadyRunning, DaemonError
    from loop.models import ModelError
    from loop.problems import ProposeError
    from loop.samplers import SamplerError
    from store.db import StoreError

    return (
        *extra,
        ConfigError,
        ModelError,
        ProposeError,
        SamplerError,
        StoreError,
        ValueError,
        AlreadyRunning,
        DaemonError,
        OSError,
    )


def _load(config: Path | None, sets: list[str] | None):
    from loop.config import ConfigError, load_config

    try:
        return load_config(config, sets or [])
    except ConfigError as e:
        _fail(str(e))


@app.command()
def start(
    rounds: int | None = typer.Option(
        None,
        "--rounds",
        "-n",
        min=0,
        help="Rounds this run has when done (default 5; with --daemon or --every: no limit).",
    ),
    daemon: bool = typer.Option(
        False, "--daemon", help="Detach and run on a schedule (pid file, loop.log, status.json in the run directory)."
    ),
    every: str | None = typer.Option(
        None, "--every", help="Start a round every INTERVAL: 45s, 30m, 2h (--daemon default: daemon.every)."
    ),
    new_run: bool = typer.Option(
        False, "--new-run", help="Start a fresh run in the same store instead of resuming the latest one."
    ),
    config: Path | None = ConfigOpt,
    set: list[str] | None = SetOpt,
) -> None:
    """Run (or resume) the loop: propose, sample, verify, store, train, evaluate.

    Ctrl-C or SIGTERM cancels the current stage within seconds (a training child too; nothing of
    the stage is stored, the next start reruns it); a second Ctrl-C stops at once. Resuming a
    run with a config that changes its results (model, sources, sampling, rewards, evaluation)
    is refused naming the changed keys; --new-run starts a fresh run instead.

    Example: loop start --rounds 8 -c configs/tiny.yaml --set sample.group_size=4"""
    cfg = _load(config, set)
    from loop import daemon as lib
    from loop import runner

    if new_run:
        typer.echo(f"new run {_call(runner.new_run, cfg)} in {cfg.store_path}", err=True)
    else:
        _call(runner.check_resume, cfg)  # before a daemon is spawned: the refusal reaches this terminal
    if daemon:
        st = _call(lib.start_daemon, cfg, rounds, every or cfg.daemon.every)
        typer.echo(
            f"started daemon pid {st['pid']} in {cfg.run.dir} (log {st.get('log')}); "
            f"`loop status` / `loop stop` with the same --config/--set"
        )
        return
    final = _call(lib.serve, cfg, 5 if rounds is None and every is None else rounds, every)
    if final.get("state") == "stopped":
        typer.echo(f"stopped ({final.get('finished_rounds')} rounds done); the same command resumes", err=True)
    if final.get("run_id"):
        _call(_print_rounds, cfg.store_path, final["run_id"])


def _call(fn, *args, **kw):
    """A library call whose known errors become a clear message and exit code 2."""
    try:
        return fn(*args, **kw)
    except _known_errors() as e:
        _fail(str(e))


RunDirOpt = typer.Option(None, "--run-dir", help="The run directory (overrides run.dir of the config).")


def _load_dir(config: Path | None, sets: list[str] | None, run_dir: Path | None):
    return _load(config, [*(sets or []), *([f"run.dir={run_dir}"] if run_dir else [])])


@app.command()
def status(
    config: Path | None = ConfigOpt,
    set: list[str] | None = SetOpt,
    run_dir: Path | None = RunDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Is a loop running in the run directory? pid, round and stage, last round's numbers, next round.

    Example: loop status --run-dir runs/tiny"""
    from loop import daemon as lib

    st = _call(lib.status, _load_dir(config, set, run_dir))
    typer.echo(json.dumps(st, default=str, indent=2) if as_json else lib.describe(st))


@app.command()
def stop(
    config: Path | None = ConfigOpt,
    set: list[str] | None = SetOpt,
    run_dir: Path | None = RunDirOpt,
    now: bool = typer.Option(
        False, "--now", help="Kill at once (SIGKILL, the training job too); the next start resumes."
    ),
    timeout: float = typer.Option(600.0, "--timeout", min=0, help="Seconds to wait for a graceful stop."),
) -> None:
    """Stop the loop running in the run directory: its current stage is cancelled (rerun by the
    next start) within seconds; --now kills at once. Waits for the process to exit.

    Example: loop stop --run-dir runs/tiny --timeout 60"""
    from loop import daemon as lib

    res = _call(lib.stop, _load_dir(config, set, run_dir), now=now, timeout=timeout)
    if not res["was_running"]:
        typer.echo(f"no loop running in {res['run_dir']}")
    elif res["gone"]:
        typer.echo(
            f"stopped pid {res['pid']} in {res['seconds']}s (state {res['state']}, "
            f"rounds done {res['finished_rounds']})"
        )
    else:
        typer.secho(
            f"pid {res['pid']} still running after {res['seconds']}s (finishing round {res['round']} "
            f"stage {res['stage']}); `loop stop --now` kills it",
            fg="yellow",
            err=True,
        )
        raise typer.Exit(1)


StoreOpt = typer.Option(None, "--store", help="DuckDB store file (default: from the config).")


# --- loop config show / schema (library: loop/config_docs.py) --------------------------------------
config_app = typer.Typer(help="The resolved config and its documented schema.", no_args_is_help=True, **PLAIN)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    config: Path | None = ConfigOpt,
    set: list[str] | None = SetOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Every config key with its resolved value (defaults < YAML < --set) and its description.

    Example: loop config show -c configs/gpu.yaml --set sample.group_size=16"""
    from loop.config_docs import rows

    table = rows(_load(config, set))
    if as_json:
        typer.echo(json.dumps([{"key": k, "value": v, "description": d} for k, v, d in table], default=str))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("key", "value", "description", show_lines=False)
    for k, v, d in table:
        t.add_row(k, json.dumps(v, default=str), d)
    Console().print(t)


@config_app.command("schema")
def config_schema() -> None:
    """The config's JSON schema, every field with its description (for editors and validators).

    Example: loop config schema > loop-config.schema.json"""
    from loop.config_docs import schema

    typer.echo(json.dumps(schema(), indent=2))


# --- loop migrate, loop inspect (library: store/, loop/inspect.py, loop/inspect_view.py) ---------
@app.command()
def migrate(config: Path | None = ConfigOpt, set: list[str] | None = SetOpt, store: Path | None = StoreOpt) -> None:
    """Bring a store's schema up to date (takes the writer lock; `loop start` does this too).

    Example: loop migrate --store runs/tiny/loop.duckdb"""
    from store.db import migrate_store

    path = store or _load(config, set).store_path
    before, after = _call(migrate_store, path)
    typer.echo(f"{path}: schema version {before} -> {after}")


RunOpt = typer.Option(None, "--run", help="Run id (default: the store's latest run).")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def _target_options(fn):
    """Give an inspect subcommand inspect's target options too, so they work after the subcommand
    (`loop inspect summary --store FILE`) as well as before it; given twice, the later wins."""
    sig = pyinspect.signature(fn)
    extra = {
        "config": ("Path | None", ConfigOpt),
        "set": ("list[str] | None", SetOpt),
        "store": ("Path | None", StoreOpt),
        "run": ("str | None", RunOpt),
    }

    @functools.wraps(fn)
    def wrapper(ctx: typer.Context, *args, config=None, set=None, store=None, run=None, **kw):
        o = dict(ctx.obj or {})
        o.update({k: v for k, v in (("config", config), ("store", store), ("run", run)) if v is not None})
        o["set"] = [*(o.get("set") or []), *(set or [])]
        ctx.obj = o
        return fn(ctx, *args, **kw)

    params = [
        *sig.parameters.values(),
        *(
            pyinspect.Parameter(k, pyinspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for k, (a, d) in extra.items()
        ),
    ]
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**fn.__annotations__, **{k: a for k, (a, _) in extra.items()}}
    return wrapper


def _target(ctx: typer.Context) -> tuple[Path, str | None, bool]:
    """(store path, run id, --json given on `inspect`) from the inspect callback's options."""
    o = ctx.obj or {}
    path = o.get("store") or _load(o.get("config"), o.get("set")).store_path
    return Path(path), o.get("run"), bool(o.get("json"))


def _emit(ctx: typer.Context, as_json: bool, fn, render, *args, run_scoped: bool = True, **kw) -> None:
    """Run an inspect library function on the target store; print JSON or `render` it."""
    from loop import inspection as lib

    path, run, json_default = _target(ctx)
    data = _call(fn, path, *args, **({"run_id": run} if run_scoped else {}), **kw)
    if as_json or json_default:
        print(lib.dumps(data))
    else:
        _call(render, data)


def _print_rounds(store_path: Path, run_id: str) -> None:
    from loop import inspection as lib
    from loop.inspection import view

    view.render_rounds(lib.rounds(store_path, run_id))


@inspect_app.callback()
def inspect(
    ctx: typer.Context,
    config: Path | None = ConfigOpt,
    set: list[str] | None = SetOpt,
    store: Path | None = StoreOpt,
    run: str | None = RunOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Per-round table (problems, samples, verified %, reward, held-out accuracy); subcommands below.

    The options here also work after the subcommand. Example: loop inspect --run run-1 samples --limit 3"""
    ctx.obj = {"config": config, "set": set, "store": store, "run": run, "json": as_json}
    if ctx.invoked_subcommand is None:  # `loop inspect` alone: the rounds table
        inspect_rounds.__wrapped__(ctx, as_json)  # type: ignore[attr-defined]


@inspect_app.command("rounds")
@_target_options
def inspect_rounds(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Per-round table (the default): problems, samples, verified %, mean reward, held-out accuracy.

    Example: loop inspect rounds --json"""
    from loop import inspection as lib
    from loop.inspection import view

    _emit(ctx, as_json, lib.rounds, view.render_rounds)


@inspect_app.command("summary")
@_target_options
def inspect_summary(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Whole-run totals: rounds, unfinished steps, samples, verified, accuracy, writer.

    Example: loop inspect summary --store runs/tiny/loop.duckdb"""
    from loop import inspection as lib
    from loop.inspection import view

    _emit(ctx, as_json, lib.summary, view.render_summary)


@inspect_app.command("problems")
@_target_options
def inspect_problems(
    ctx: typer.Context,
    pass_rate: str | None = typer.Option(None, "--pass-rate", help="Only pass rates in LO..HI, e.g. 0..0.5."),
    limit: int = typer.Option(20, "--limit", min=1, max=10_000),
    as_json: bool = JsonOpt,
) -> None:
    """Problems of the run with their pass rate (verified / judged samples), hardest first.

    Example: loop inspect problems --pass-rate 0..0.25 --limit 10"""
    from loop import inspection as lib
    from loop.inspection import view

    _emit(ctx, as_json, lib.problems, view.render_problems, pass_rate=pass_rate, limit=limit)


@inspect_app.command("samples")
@_target_options
def inspect_samples(
    ctx: typer.Context,
    verified: bool = typer.Option(False, "--verified", help="Only verified."),
    round: int | None = typer.Option(None, "--round", help="Only this round."),
    problem: str | None = typer.Option(None, "--problem", help="Only this problem id."),
    limit: int = typer.Option(10, "--limit", min=1, max=10_000),
    as_json: bool = JsonOpt,
) -> None:
    """Print stored chains with their rewards.

    Example: loop inspect samples --verified --round 2 --limit 5"""
    from loop import inspection as lib
    from loop.inspection import view

    _emit(
        ctx,
        as_json,
        lib.samples,
        view.render_samples,
        verified=True if verified else None,
        round=round,
        problem_id=problem,
        limit=limit,
    )


@inspect_app.command("show")
@_target_options
def inspect_show(
    ctx: typer.Context,
    sample_id: str = typer.Argument(..., help="Sample id or a unique prefix."),
    as_json: bool = JsonOpt,
) -> None:
    """One sample in full: problem, completion, every reward, provenance, model lineage, its group.

    Example: loop inspect show 3fa9c2"""
    from loop import inspection as lib
    from loop.inspection import view

    _emit(ctx, as_json, lib.show, view.render_show, sample_id, run_scoped=False)


@inspect_app.command("sql")
@_target_options
def inspect_sql(
    ctx: typer.Context,
    query: str = typer.Argument(..., help='One SELECT, e.g. "SELECT count(*) FROM samples".'),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000),
    as_json: bool = JsonOpt,
) -> None:
    """Run one read-only SELECT on the store (writes and file access are refused).

    Example: loop inspect sql 'SELECT round, count(*) FROM samples GROUP BY ALL'"""
    from loop import inspection as lib
    from loop.inspection import view

    _emit(ctx, as_json, lib.sql, view.render_sql, query, limit=limit, run_scoped=False)


@inspect_app.command("curve")
@_target_options
def inspect_curve(
    ctx: typer.Context,
    png: Path | None = typer.Option(None, "--png", help="Also write a PNG chart (needs matplotlib)."),
    as_json: bool = JsonOpt,
) -> None:
    """Held-out accuracy per round as a terminal bar chart (and optionally a PNG).

    Example: loop inspect curve --png acc.png"""
    from loop import inspection as lib
    from loop.inspection import view

    def curve(path, run_id=None):
        data = lib.curve(path, run_id=run_id)
        if png is not None:
            data["png"] = str(view.curve_png(data, png))
        return data

    def render(data):
        view.render_curve(data)
        if data.get("png"):
            view.out.print(f"wrote {data['png']}")

    _emit(ctx, as_json, curve, render)


@inspect_app.command("proposer")
@_target_options
def inspect_proposer(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """The proposer's curve per round: proposals drawn, kept, share kept, rejections per reason, and the
    mean learnability of the problems kept proposals produced (over those sampled; empty before).

    Example: loop inspect proposer --json"""
    from loop import inspection as lib
    from loop.inspection import view

    _emit(ctx, as_json, lib.proposer, view.render_proposer)


@inspect_app.command("export")
@_target_options
def inspect_export(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="New directory to write."),
    format: SampleFormat = typer.Option(
        "jsonl",
        "--format",
        help="hf: a datasets.load_from_disk folder; trl-sft: verified chains as TRL SFT rows; "
        "trl-grpo: problems as TRL GRPO rows (prompt + answer).",
    ),
    verified: bool = typer.Option(False, "--verified", help="Only verified samples (jsonl/parquet/hf)."),
    round: int | None = typer.Option(None, "--round", min=0, help="trl-*: only this round's samples."),
    messages: bool = typer.Option(False, "--messages", help="trl-sft: one `messages` column, not prompt/completion."),
    force: bool = typer.Option(False, "--force", help="trl-*: replace a non-empty --out directory."),
    as_json: bool = JsonOpt,
) -> None:
    """Export samples with problem, completion, rewards and provenance, or (trl-sft, trl-grpo) datasets
    TRL's trainers take as they are, with a card naming the system prompt and chat template.

    Example: loop inspect export --format trl-sft --round 2 -o data/sft"""
    from loop.inspection import view

    def done(m: dict) -> None:
        view.out.print(f"exported {m['rows']} rows to {m['out']}")

    if format.value.startswith("trl-"):
        from loop.export import trl

        _emit(
            ctx, as_json, trl.export_trl, done, out, fmt=format.value, round=round, force=force, messages_col=messages
        )
    else:
        from loop.export import samples as lib

        _emit(ctx, as_json, lib.export, done, out, fmt=format.value, verified_only=verified)


@inspect_app.command("sets")
def inspect_sets(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Held-out accuracy per round for each evaluation set (`evaluate.sets`; heldout = the gated one).

    Example: loop inspect sets -c configs/default.yaml --json"""
    from loop import inspection as lib
    from loop.inspection import view

    _emit(ctx, as_json, lib.sets, view.render_sets)


@inspect_app.command("sft")
def inspect_sft(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """`loop sft` models: data provenance, held-out loss before/after, fixed prompts' answers before/after.

    Example: loop inspect sft -c configs/medical.yaml"""
    from loop import inspection as lib
    from loop.inspection import view

    _emit(ctx, as_json, lib.sft, view.render_sft)


@app.command()
def sft(
    config: Path | None = ConfigOpt,
    set: list[str] | None = SetOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the job's info as JSON."),
) -> None:
    """One-shot LoRA SFT on instruction data (`instruct.sources`: alpaca, messages, medical), the course's
    recipe as defaults; recorded as a model version (export it with `loop export model`).

    Example: loop sft -c configs/medical.yaml --set model.name=/path/to/Qwen2.5-1.5B-Instruct"""
    cfg = _load(config, set)
    from loop import instruct
    from loop.inspection import view

    info = _call(instruct.run_sft, cfg)
    if as_json:
        print(json.dumps(info, default=str, indent=2, ensure_ascii=False))
        return
    view.render_sft(
        [
            {
                "model_version": info["model_version"],
                "round": info["round"],
                "metrics": info,
                "config": {
                    "template": "processor" if info.get("vision") else cfg.instruct.template,
                    "train_rows": info["examples"],
                    "heldout_rows": info["heldout_rows"],
                    "data": info.get("data", []),
                },
            }
        ]
    )


def _ints(flag: str, text: str | None, lo: int) -> list[int]:
    """`64,128,256` -> [64, 128, 256]; a bad item exits naming the flag and the item."""
    if not text:
        return []
    out = []
    for item in text.split(","):
        try:
            v = int(item.strip())
        except ValueError:
            _fail(f"{flag}: {item.strip()!r} is not an integer (expected e.g. {flag} 64,128,256)")
        if v < lo:
            _fail(f"{flag}: {v} is below {lo}")
        out.append(v)
    return out


@app.command("eval")
def eval_cmd(
    budgets: str | None = typer.Option(
        None, "--budgets", help="Thinking-token budgets to sweep, comma-separated (default: evaluate.budgets)."
    ),
    waits: str | None = typer.Option(
        None, "--waits", help='Times "Wait" extends the thinking, comma-separated (default: evaluate.waits).'
    ),
    only: str | None = typer.Option(None, "--only", help="Only this evaluation set (default: every set)."),
    png: Path | None = typer.Option(None, "--png", help="Sweep: write accuracy against tokens as a PNG."),
    config: Path | None = ConfigOpt,
    set: list[str] | None = SetOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Evaluate the run's current model on its evaluation sets now (greedy pass@1, pass@k/maj@k of a set
    with k), or sweep s1 budget forcing: accuracy against thinking tokens, a table and a PNG. Nothing is stored.

    Example: loop eval -c configs/s1.yaml --budgets 64,128,256 --waits 0,1,2 --png sweep.png"""
    cfg = _load(config, set)
    b = _ints("--budgets", budgets, 1) if budgets is not None else list(cfg.evaluate.budgets)
    w = _ints("--waits", waits, 0) if waits is not None else list(cfg.evaluate.waits)
    if png is not None and not (b or w):
        _fail("--png draws a budget sweep: give --budgets and/or --waits (or evaluate.budgets/waits)")
    from loop import sweep
    from loop.inspection import view

    data = _call(sweep.run_eval, cfg, b, w, only)
    if png is not None:
        _call(sweep.sweep_png, data, png)
        data["png"] = str(png)
    if as_json:
        print(json.dumps(data, default=str, indent=2))
        return
    view.render_eval(data)
    if png is not None:
        view.out.print(f"wrote {png}")


# --- loop export model (library: loop/export/) ----------------------------------------
export_app = typer.Typer(help="Export from the store: models (`export model`).", no_args_is_help=True, **PLAIN)
app.add_typer(export_app, name="export")


@export_app.command("model")
def export_model_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (absent or empty unless --force)."),
    fmt: ModelFormat = typer.Option(
        "merged16",
        "--format",
        "-f",
        help="lora: the PEFT adapter; merged16: base + adapter merged; merged4: merged, bitsandbytes "
        "4-bit; gguf: for llama.cpp; ollama: the gguf + a Modelfile.",
    ),
    round: int | None = typer.Option(None, "--round", help="The model trained in this round."),
    model_version: str | None = typer.Option(None, "--model-version", help="A model version (or unique prefix)."),
    run: str | None = typer.Option(None, "--run", help="Run id (default: the store's latest run)."),
    dtype: DType = typer.Option("bfloat16", "--dtype", help="merged16 weights; merged4's compute dtype."),
    outtype: OutType = typer.Option(
        "f16", "--outtype", help="gguf/ollama tensors; q4_k_m, q5_k_m, q6_k, q4_0 through llama-quantize."
    ),
    converter: str | None = typer.Option(
        None,
        "--converter",
        help="llama.cpp convert_hf_to_gguf.py path, "
        "or 'builtin' (default: $LOOP_LLAMA_CPP_CONVERT, then PATH, "
        "then builtin).",
    ),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        help="llama.cpp llama-quantize path for k-quant outtypes (default: $LOOP_LLAMA_QUANTIZE, "
        "then PATH, then the copy scripts/setup.sh builds).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out directory."),
    config: Path | None = ConfigOpt,
    set: list[str] | None = SetOpt,
    store: Path | None = typer.Option(None, "--store", help="DuckDB store file (default: from the config)."),
) -> None:
    """Export a model version (default: the current accepted model) with a lineage model card.

    Example: loop export model --round 3 --format ollama --outtype q4_k_m --out out/ollama"""
    from loop.export.errors import ExportError
    from loop.export.model import export_model

    path = store or _load(config, set).store_path
    try:
        lin = export_model(
            path,
            out,
            fmt.value,
            round=round,
            version=model_version,
            run_id=run,
            dtype=dtype.value,
            outtype=outtype.value,
            converter=converter,
            force=force,
            quantizer=quantize,
        )
    except _known_errors(ExportError) as e:
        _fail(str(e))
    m = lin["model"]
    typer.echo(f"exported model {m['version']} (round {m['round']}, run {m['run_id']}) as {fmt.value} to {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
