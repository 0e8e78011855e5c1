"""Run untrusted, model-written answer programs: the one entry point is `run`.

Program contract: the program is plain Python that may import only the allowed
modules (sympy and a few math-y stdlib modules) and must assign a top-level
variable `answer`. The sandbox's output is `str(answer)`; anything the program
prints is captured (capped) for debugging and never counts as the answer.

Invariant: `run` never executes a line of the program in this process. Each run
is a fresh interpreter (`python -I -S -B`, clean env, empty temp cwd that is
deleted afterwards) in its own process group, and the program is executed
`runs` times; differing outputs are rejected as nondeterministic (hash seed and
ASLR differ per process, so hash()/id()/unseeded random are caught). Layers,
outer to inner; they overlap so every attack class in tests/test_sandbox.py is
stopped by at least two of them (the tests switch layers off to show it):

  static    AST check before any process starts (imports, dunders, names).
  netns     `unshare -n`: the child has no network at all (when permitted).
  rlimit    RLIMIT_AS (memory), RLIMIT_FSIZE=0, RLIMIT_CPU (soft = hard, so the
            kernel SIGKILLs at the limit: ignoring SIGPROF/SIGXCPU buys
            nothing), NOFILE, NPROC=1 (ignored for root, hence seccomp below).
  seccomp   x86_64 BPF syscall denylist: no fork/clone/exec, no sockets, no
            open for writing, no unlink/rename/chmod/..., no kill/ptrace/mount/
            setrlimit, no access/readlink. Reading files is only stopped by the
            audit hook.
  audit     sys.addaudithook: denies open-for-write, reads outside the Python
            install, os.*/subprocess/socket/ctypes/thread events; the first
            denial reports `denied:...` and hard-exits (not catchable). With
            it, os.stat/lstat/access/readlink/statvfs answer PermissionError
            for any path outside the scratch folder and the Python install
            (Python has no audit event for them).
  builtins  the program's builtins lack eval/exec/open/...; `import` is
            allowlisted; sympify/parse_expr of strings only accepts plain math
            and evaluates it without builtins; operator.attrgetter/methodcaller
            are replaced by denials (statically, they and str.format/
            format_map/string.Formatter are denied attributes: all of them
            traverse attributes named by run-time strings).
  cpu_timer ITIMER_PROF kills the child after `timeout_s` CPU seconds; the
            parent kills the process group at the wall-clock deadline:
            `timeout_s` + PROGRAM_GRACE_S after the program started for a
            child that is idle (so `pause()`/sleeping ends at the CPU limit;
            a busy one runs to its CPU limit), `wall_s` overall.

Result channel: the child reports on a pipe of its own (not stdout), each line
authenticated with an HMAC whose per-run key the parent sends on stdin; the
child announces "program starts" before executing it.  A line that fails the
check (a raw os.write by the program), or a started run that ends without a
valid result (the program dup2'd over or closed the pipe, or exited), is the
program's failure `denied:result_channel`, never `ok` and never `sandbox:`.
The key is never in the child's environment, argv or files, and once the audit
hook is installed only the hook holds it (with the emitter): what the program
can reach (its builtins' guards, the frames below it) reports through an audit
event (`_audit_emit`), so with the static layer off a walk of frames, closures
and defaults finds no key (tests/test_sandbox.py). The audit hook also denies
the object graph (`gc.get_objects/get_referrers/get_referents`: `denied:gc`)
and frames from tracebacks and generators (`denied:frame`); `sys._getframe`
stays open (libraries need it). Calling `_audit_emit` itself gives a program
an "ok" line with an output of its choosing -- what assigning `answer` gives it
anyway; every denial exits at once, so no result can cover one.

`SandboxResult.reason` vocabulary: 'ok', 'static:<what>' (syntax, too_long,
import X, dunder X, private X, name X, attribute X, string __x), 'denied:<what>'
(open write, open read, open fd, listdir, socket, subprocess, fork, thread,
ctypes, import X, getattr X, setattr X, sympify, file_size, <audit event> such
as os.remove), 'timeout', 'cpu_limit', 'memory_limit', 'nondeterministic',
'no_answer', 'output_too_long', 'error:<ExceptionType>', 'crash:<SIGNAL>',
'denied:result_channel', 'denied:attrgetter', 'denied:methodcaller', 'denied:gc',
'denied:frame <attribute>',
'sandbox:<why>' (startup X, spawn X, bad_result, no_result: the sandbox itself
failed, not the program). Start-up cost: ~0.05 s CPU per run, ~0.35 s when the
program imports sympy/mpmath (only then is sympy imported).
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import functools
import hashlib
import hmac
import json
import math
import operator
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib.util import find_spec

DEFAULT_ALLOWED_IMPORTS = frozenset(
    {
        "sympy",
        "mpmath",
        "math",
        "cmath",
        "fractions",
        "decimal",
        "numbers",
        "itertools",
        "functools",
        "operator",
        "collections",
        "statistics",
        "random",
        "heapq",
        "bisect",
        "string",
    }
)
# sympy submodules that evaluate strings, import by name, spawn processes or
# write files; `sympy.utilities.iterables` is the one utilities module allowed.
_DENIED_SUBMODULES = (
    "sympy.external",
    "sympy.utilities",
    "sympy.testing",
    "sympy.interactive",
    "sympy.parsing",
    "sympy.plotting",
    "sympy.codegen",
    "sympy.printing.preview",
    "mpmath.tests",
)
_ALLOWED_SUBMODULES = ("sympy.utilities.iterables",)
# Bare names the program may not use (the builtins are also absent at run time).
DENY_NAMES = frozenset(
    {
        "eval",
        "exec",
        "compile",
        "open",
        "input",
        "breakpoint",
        "globals",
        "locals",
        "vars",
        "setattr",
        "delattr",
        "help",
        "exit",
        "quit",
        "memoryview",
        "copyright",
        "credits",
        "license",
        "lambdify",
        "preview",
        "init_session",
        "init_printing",
        "parse_expr",
        "parse_latex",
        "import_module",
        "autowrap",
        "ufuncify",
        "codegen",
        "attrgetter",
        "methodcaller",  # attribute traversal by run-time strings
    }
)
# Attribute names that lead to modules, frames or code objects.
DENY_ATTRS = DENY_NAMES | frozenset(
    {
        "os",
        "sys",
        "subprocess",
        "builtins",
        "importlib",
        "ctypes",
        "socket",
        "shutil",
        "pathlib",
        "io",
        "pickle",
        "marshal",
        "threading",
        "multiprocessing",
        "signal",
        "resource",
        "gc",
        "inspect",
        "code",
        "codeop",
        "tempfile",
        "glob",
        "modules",
        "system",
        "popen",
        "fork",
        "mro",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "tb_frame",
        "tb_next",
        "co_code",
        "func_globals",
        "func_code",
        "external",
        "utilities",
        "testing",
        "interactive",
        "parsing",
        "runtests",
        "doctest",
        "test",
        "pkgdata",
        "format",
        "format_map",
        "vformat",
        "get_field",
        "Formatter",
    }
)
_HEAVY = frozenset({"sympy", "mpmath"})  # imported only if the program imports them
MAX_PROGRAM_CHARS = 20_000
PROGRAM_GRACE_S = 0.5  # wall seconds past timeout_s from the program's start
IDLE_CPU_SHARE = 0.2  # a child using less of a core than this since its start is idle (sleeping)
_CHILD_ARG = "--sandbox-child"
_ALL_LAYERS = ("static", "netns", "rlimit", "seccomp", "audit", "builtins", "cpu_timer")


@dataclass
class SandboxResult:
    ok: bool
    output: str | None  # str(answer) when ok
    reason: str  # see module docstring
    elapsed_s: float  # wall time of the whole call
    detail: str = ""  # exception message, denied path, ...
    stdout: str = ""  # what the program printed (capped), first run
    stderr_tail: str = ""
    cpu_s: float = 0.0  # max child CPU time over runs (incl. startup)
    layers: tuple[str, ...] = field(default_factory=tuple)  # guards that were active


# ---------------------------------------------------------------- static check


def _import_reason(name: str, allow: frozenset) -> str | None:
    if name.partition(".")[0] not in allow:
        return f"static:import {name}"
    if name.startswith(_ALLOWED_SUBMODULES):
        return None
    if any(name == d or name.startswith(d + ".") for d in _DENIED_SUBMODULES):
        return f"static:import {name}"
    return None


def _ident_reason(name: str, deny: frozenset, kind: str) -> str | None:
    if name.startswith("__"):
        return f"static:dunder {name}"
    if kind == "attribute" and name.startswith("_"):
        return f"static:private {name}"
    if name in deny:
        return f"static:{kind} {name}"
    return None


def _node_reason(node: ast.AST, allow: frozenset) -> str | None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if r := _import_reason(alias.name, allow):
                return r
    elif isinstance(node, ast.ImportFrom):
        if node.level or not node.module:
            return "static:import relative"
        if r := _import_reason(node.module, allow):
            return r
        for alias in node.names:
            if alias.name != "*" and (r := _ident_reason(alias.name, DENY_ATTRS, "attribute")):
                return r
    elif isinstance(node, ast.Attribute):
        return _ident_reason(node.attr, DENY_ATTRS, "attribute")
    elif isinstance(node, ast.Name):
        return _ident_reason(node.id, DENY_NAMES, "name")
    elif isinstance(node, ast.MatchClass):  # `case C(attr=...)` reads attributes
        for attr in node.kwd_attrs:
            if r := _ident_reason(attr, DENY_ATTRS, "attribute"):
                return r
    elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
        if m := re.search(r"__\w*", text):  # getattr/format/sympify payloads
            return f"static:string {m.group(0)}"
    return None


def static_check(program: str, allow_imports: frozenset = DEFAULT_ALLOWED_IMPORTS) -> str | None:
    """Cheap pre-filter, no process: the rejection reason, or None if it may run."""
    if len(program) > MAX_PROGRAM_CHARS:
        return "static:too_long"
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "static:syntax"
    found = [
        (getattr(n, "end_lineno", 0) or 0, getattr(n, "end_col_offset", 0) or 0, r)
        for n in ast.walk(tree)
        if (r := _node_reason(n, allow_imports))
    ]
    return min(found)[2] if found else None  # the first offence in reading order


# ---------------------------------------------------------------- parent side

_netns_lock = threading.Lock()
_netns_ok: bool | None = None


def _netns_available() -> bool:
    """Probe once per process whether `unshare -n` works (root or userns)."""
    global _netns_ok
    with _netns_lock:
        if _netns_ok is None:
            exe = shutil.which("unshare")
            try:
                _netns_ok = (
                    exe is not None
                    and subprocess.run([exe, "-n", "true"], capture_output=True, timeout=10).returncode == 0
                )
            except (OSError, subprocess.SubprocessError):
                _netns_ok = False
        return _netns_ok


@functools.lru_cache(maxsize=1)
def _child_paths() -> tuple[list[str], list[str]]:
    """(sys.path additions, readable roots): where sympy/mpmath live, plus the
    stdlib. Found without importing sympy here."""
    site = []
    for mod in ("sympy", "mpmath"):
        spec = find_spec(mod)
        if spec and spec.origin:
            site.append(os.path.dirname(os.path.dirname(spec.origin)))
    paths = sysconfig.get_paths()
    dirs = [paths["stdlib"], paths["platstdlib"], *site]
    # both spellings: the child resolves paths lexically when it may not lstat above a root
    roots = {os.path.realpath(d) for d in dirs} | {os.path.abspath(d) for d in dirs}
    return sorted(set(site)), sorted(roots)


def _collect(
    proc: subprocess.Popen, result_fd: int, key: bytes, deadline: float, program_s: float, cap: int
) -> tuple[bytes, bytes, bytes, str]:
    """Read stdout/stderr/result pipe until EOF, deadline or `cap` bytes (never
    unbounded). Once the child's authenticated "started" line arrives, a program
    deadline `program_s` from then applies to a child that is idle (sleeping,
    paused: under IDLE_CPU_SHARE of a core since it started); a busy one runs on
    to its CPU limit (a loaded machine must not turn cpu_limit into timeout)."""
    assert proc.stdout is not None and proc.stderr is not None  # spawned with stdout/stderr=PIPE
    out, err, res = bytearray(), bytearray(), bytearray()
    started, program_deadline, t_start, cpu_start = False, float("inf"), 0.0, 0.0
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        sel.register(result_fd, selectors.EVENT_READ, res)
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                return bytes(out), bytes(err), bytes(res), "timeout"
            if now >= program_deadline:
                cpu = _proc_cpu_s(proc.pid)
                if cpu is None or cpu - cpu_start < IDLE_CPU_SHARE * (now - t_start):
                    return bytes(out), bytes(err), bytes(res), "timeout"
                program_deadline = now + PROGRAM_GRACE_S  # busy: look again shortly
            for key_, _ in sel.select(min(deadline, program_deadline) - now):
                chunk = os.read(key_.fd, 65536)
                if not chunk:
                    sel.unregister(key_.fileobj)
                    continue
                buf: bytearray = key_.data  # the stream's own buffer, given at register()
                buf += chunk
                if len(buf) > cap:
                    return bytes(out), bytes(err), bytes(res), "overflow"
                if buf is res and not started and _verified_lines(bytes(res), key)[0]:
                    started, t_start, cpu_start = True, time.monotonic(), _proc_cpu_s(proc.pid) or 0.0
                    program_deadline = t_start + program_s
    return bytes(out), bytes(err), bytes(res), "eof"


def _proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of a live child from /proc; None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _verified_lines(raw: bytes, key: bytes) -> tuple[bool, dict | None, bool]:
    """(started seen, the result dict or None, some line failed authentication)."""
    started, result, forged = False, None, False
    lines = raw.split(b"\n")
    for line in lines[:-1]:  # the last piece is incomplete (or empty)
        body, _, mac = line.rpartition(b" ")
        if not body or not hmac.compare_digest(mac, _mac(key, body).encode()):
            forged = True
        elif body == b"S":
            started = True
        elif body.startswith(b"R ") and result is None:
            try:
                result = json.loads(body[2:])
            except ValueError:
                forged = True
    return started, result, forged or bool(lines[-1])


def _reap(proc: subprocess.Popen) -> float:
    """Kill the whole process group (before reaping, so the pgid cannot be
    reused), reap, and return the child's CPU seconds."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu = ru.ru_utime + ru.ru_stime
    except ChildProcessError:
        proc.wait()
        cpu = 0.0
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f:
            f.close()
    return cpu


_SIGNAL_REASONS = {
    signal.SIGPROF: "cpu_limit",
    signal.SIGXCPU: "cpu_limit",
    signal.SIGKILL: "cpu_limit",
    signal.SIGXFSZ: "denied:file_size",
}


def _interpret(out: bytes, err: bytes, res_raw: bytes, key: bytes, status: str, rc: int | None) -> dict:
    """Turn one child's raw streams and exit status into a result dict."""
    if status == "timeout":
        return {"reason": "timeout"}
    if status == "overflow":
        return {"reason": "output_too_long"}
    started, res, forged = _verified_lines(res_raw, key)
    if forged:
        return {"reason": "denied:result_channel", "detail": "a result line failed authentication"}
    if res is not None:
        if (
            not isinstance(res, dict)
            or not isinstance(res.get("reason"), str)
            or (res["reason"] == "ok") != isinstance(res.get("output"), str)
        ):
            return {"reason": "sandbox:bad_result"}
        return res
    if rc is not None and rc < 0:
        try:
            sig = signal.Signals(-rc)
        except ValueError:
            return {"reason": f"crash:signal {-rc}"}
        return {"reason": _SIGNAL_REASONS.get(sig, f"crash:{sig.name}")}
    if b"MemoryError" in err:
        return {"reason": "memory_limit"}
    if started:  # the program ran and the channel went quiet: it closed, redirected or bypassed it
        return {"reason": "denied:result_channel", "detail": f"no result after the program started, rc={rc}"}
    return {"reason": f"sandbox:no_result rc={rc}"}


def _startup_imports(program: str, allow: frozenset) -> frozenset:
    """The allowlist minus sympy/mpmath when the program imports neither: the sympy import
    is most of a run's start-up cost (bench/results/README.md)."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return allow
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    if any(name.partition(".")[0] in _HEAVY for name in names):
        return allow
    return allow - _HEAVY


def run(
    program: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    runs: int = 2,
    allow_imports: frozenset = DEFAULT_ALLOWED_IMPORTS,
    max_output: int = 4096,
    wall_s: float | None = None,
    _disable: frozenset = frozenset(),
) -> SandboxResult:
    """Run `program` `runs` times (concurrently, each in a fresh process).

    timeout_s: CPU seconds for the program itself (interpreter + sympy start-up,
    ~0.35 s, is not counted); wall_s: wall-clock kill of the whole call, default
    3*timeout_s + 5 (start-up on a loaded machine); once the program starts it
    has timeout_s + PROGRAM_GRACE_S wall seconds (or wall_s, when given: tests
    on a loaded machine pass a far wall_s so CPU-bound programs report cpu_limit).
    `_disable` switches layers off and exists only so tests can prove each
    layer contains an attack on its own; never use it in production.
    """
    if not (timeout_s > 0 and memory_mb > 0 and runs >= 1 and max_output > 0):
        raise ValueError("timeout_s, memory_mb, runs and max_output must be positive")
    t0 = time.monotonic()
    layers = [name for name in _ALL_LAYERS if name not in _disable]
    if "static" in layers and (reason := static_check(program, allow_imports)):
        return SandboxResult(False, None, reason, time.monotonic() - t0, layers=tuple(layers))
    if "netns" in layers and not _netns_available():
        layers.remove("netns")
    base = {
        "program": program,
        "timeout_s": timeout_s,
        "memory_mb": memory_mb,
        "max_output": max_output,
        "allow": sorted(_startup_imports(program, allow_imports)),
        "path": _child_paths()[0],
        "roots": _child_paths()[1],
        "layers": layers,
    }
    cmd = [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__), _CHILD_ARG]
    if "netns" in layers:
        unshare = shutil.which("unshare")
        assert unshare is not None  # _netns_available() found it
        cmd = [unshare, "-n", "--"] + cmd
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}
    deadline = t0 + (wall_s if wall_s is not None else 3 * timeout_s + 5)
    program_s = wall_s if wall_s is not None else timeout_s + PROGRAM_GRACE_S
    cap = max_output * 8 + 65536
    results, cpu = [], 0.0
    with tempfile.TemporaryDirectory(prefix="loop-sandbox-") as cwd:
        procs: list[subprocess.Popen] = []
        chans: list[tuple[int, bytes]] = []  # (read end of the result pipe, HMAC key) per run
        try:
            for _ in range(runs):
                r, w = os.pipe()
                chans.append((r, os.urandom(32)))
                try:
                    procs.append(
                        subprocess.Popen(
                            cmd,
                            cwd=cwd,
                            env=env,
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            start_new_session=True,
                            pass_fds=(w,),
                        )
                    )
                finally:
                    os.close(w)
                _send(procs[-1], {**base, "result_fd": w, "key": chans[-1][1].hex()})
            raw = [_collect(p, r, k, deadline, program_s, cap) for p, (r, k) in zip(procs, chans)]
        except OSError as e:  # could not spawn (EAGAIN, ENOMEM, ...): not the program's fault
            return SandboxResult(
                False,
                None,
                f"sandbox:spawn {type(e).__name__}",
                time.monotonic() - t0,
                detail=str(e),
                layers=tuple(layers),
            )
        finally:
            cpus = [_reap(p) for p in procs]
            for r, _ in chans:
                os.close(r)
        cpu = max(cpus)
        for p, (_, k), (out, err, res, status) in zip(procs, chans, raw):
            results.append((_interpret(out, err, res, k, status, p.returncode), err))
    return _combine(results, layers, cpu, time.monotonic() - t0)


def _send(proc: subprocess.Popen, cfg: dict) -> None:
    stdin = proc.stdin
    assert stdin is not None  # stdin=PIPE
    try:
        stdin.write(json.dumps(cfg).encode())
        stdin.close()
    except BrokenPipeError:
        pass


def _combine(results: list[tuple[dict, bytes]], layers: list[str], cpu: float, elapsed: float) -> SandboxResult:
    """One SandboxResult from all runs: the first failure wins, then outputs
    must agree. Child-reported fields are coerced (the child is untrusted)."""
    first, _ = results[0]
    if isinstance(first.get("guards"), list):  # guards the child failed to install
        layers = [g for g in layers if g not in first["guards"]]
    cpu_s, active, stdout = round(cpu, 3), tuple(layers), str(first.get("stdout", ""))[:1000]
    for res, err in results:
        if res["reason"] != "ok":
            return SandboxResult(
                False,
                None,
                res["reason"][:200],
                elapsed,
                detail=str(res.get("detail", ""))[:500],
                stderr_tail=err.decode("utf-8", "replace")[-2000:],
                cpu_s=cpu_s,
                layers=active,
                stdout=stdout,
            )
    outputs = {res["output"] for res, _ in results}
    if len(outputs) > 1:
        return SandboxResult(
            False,
            None,
            "nondeterministic",
            elapsed,
            detail=" | ".join(sorted(outputs))[:500],
            cpu_s=cpu_s,
            layers=active,
            stdout=stdout,
        )
    return SandboxResult(True, outputs.pop(), "ok", elapsed, cpu_s=cpu_s, layers=active, stdout=stdout)


# ---------------------------------------------------------------- child side
# Everything below runs only in the child interpreter (`python -I -S -B this_file`).

_O_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | 0o20000000
_DENY_EVENTS = (  # audit-event prefixes -> reason
    ("socket.", "denied:socket"),
    ("ctypes.", "denied:ctypes"),
    ("subprocess.", "denied:subprocess"),
    ("os.system", "denied:subprocess"),
    ("os.exec", "denied:subprocess"),
    ("os.posix_spawn", "denied:subprocess"),
    ("os.spawn", "denied:subprocess"),
    ("pty.", "denied:subprocess"),
    ("os.fork", "denied:fork"),
    ("_thread.start_new_thread", "denied:thread"),
    ("os.", None),
    ("shutil.", None),
    ("mmap.", None),
    ("fcntl.", None),
    ("resource.", None),
    ("signal.", None),
    ("sys.addaudithook", None),
    ("sys.settrace", None),
    ("sys.setprofile", None),
    ("sys._current_frames", None),
    ("gc.", "denied:gc"),  # get_objects/get_referrers/get_referents: the object graph holds the result key
    ("tempfile.", None),
    ("glob.", None),
    ("webbrowser.", None),
    ("urllib.", None),
    ("http.", None),
    ("ftplib.", None),
    ("smtplib.", None),
    ("sqlite3.", None),
    ("builtins.input", None),
    ("builtins.breakpoint", None),
    ("code.__new__", None),
    ("cpython.", None),
    ("syslog.", None),
    ("pdb.", None),
)
# A frame's f_locals/f_globals lead to the sandbox's own frames (the result emitter, its key); Python
# audits these getters (`object.__getattr__`), not f_back/f_locals themselves.
_FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
_DENY_RUNTIME_IMPORTS = frozenset(
    {
        "socket",
        "_socket",
        "ssl",
        "_ssl",
        "ctypes",
        "_ctypes",
        "subprocess",
        "_posixsubprocess",
        "multiprocessing",
        "_multiprocessing",
        "pty",
        "mmap",
        "asyncio",
        "http",
        "urllib",
        "ftplib",
        "smtplib",
        "socketserver",
        "xmlrpc",
        "webbrowser",
        "sqlite3",
        "_sqlite3",
        "pdb",
        "code",
        "codeop",
        "shutil",
    }
)
# x86_64 syscalls the seccomp filter answers with EPERM.
_SECCOMP_DENY = (
    56,
    57,
    58,
    59,
    322,
    435,  # clone fork vfork execve execveat clone3
    41,
    42,
    43,
    49,
    50,
    53,
    288,  # socket connect accept bind listen socketpair accept4
    62,
    200,
    234,
    129,
    297,
    424,
    434,
    438,
    101,
    310,
    311,  # kill tkill tgkill sigqueue pidfd ptrace vm_rw
    76,
    77,
    82,
    83,
    84,
    85,
    86,
    87,
    88,
    90,
    91,
    92,
    93,
    94,
    132,
    133,
    235,
    258,
    259,
    260,
    261,
    263,
    264,
    265,
    266,
    268,
    280,
    316,  # file mutation (truncate..renameat2)
    188,
    189,
    190,
    197,
    198,
    199,  # xattrs
    155,
    161,
    165,
    166,
    169,
    172,
    173,
    135,
    160,
    175,
    176,
    313,
    246,
    320,
    321,
    298,
    248,
    249,
    250,
    272,
    308,
    319,
    323,
    425,
    426,
    427,
    437,
    428,
    429,
    430,
    431,
    432,
    433,
    442,
    303,
    304,
    103,
    163,
    164,
    167,
    168,
    170,
    171,
    179,
    227,
    159,
    300,
    305,
    153,
    134,
    154,
    443,
    452,
    460,
    463,
    466,
    467,
    469,  # clock_adjtime vhangup uselib ldt ...
    141,
    142,
    144,
    203,
    251,
    256,
    279,  # priority/scheduling/memory of *other* processes
    21,
    269,
    439,
    89,
    267,  # access faccessat faccessat2 readlink readlinkat
)


def _install_seccomp() -> bool:
    """Kernel-enforced syscall denylist (x86_64 only); True if installed."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # RET_ALLOW, RET_ERRNO|EPERM
    prog: list = [
        (0x20, 0, 0, 4),
        (0x15, 1, 0, 0xC000003E),
        (0x06, 0, 0, 0x80000000),
        (0x20, 0, 0, 0),
        (0x35, "D", 0, 0x40000000),
    ]  # x32 ABI -> deny
    prog += [(0x15, "D", 0, nr) for nr in _SECCOMP_DENY]
    prog += [(0x15, "OPEN", 0, 2), (0x15, "OPENAT", 0, 257), (0x15, "PRL", 0, 302), (0x06, 0, 0, allow)]
    labels = {"OPEN": len(prog)}
    prog += [(0x20, 0, 0, 24), (0x45, "D", "A", _O_WRITE)]  # open: flags = arg1
    labels["OPENAT"] = len(prog)
    prog += [(0x20, 0, 0, 32), (0x45, "D", "A", _O_WRITE)]  # openat: flags = arg2
    labels["PRL"] = len(prog)  # prlimit64: new != NULL
    prog += [(0x20, 0, 0, 32), (0x15, 0, "D", 0), (0x20, 0, 0, 36), (0x15, "A", "D", 0)]
    labels["A"], labels["D"] = len(prog), len(prog) + 1
    prog += [(0x06, 0, 0, allow), (0x06, 0, 0, deny)]

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    rel = lambda j, i: labels[j] - i - 1 if isinstance(j, str) else j  # noqa: E731
    if not all(0 <= rel(j, i) <= 255 for i, (_, t, f, _) in enumerate(prog) for j in (t, f)):
        return False  # a jump would not fit in a u8
    arr = (Filter * len(prog))(*[Filter(c, rel(t, i), rel(f, i), k) for i, (c, t, f, k) in enumerate(prog)])
    libc = ctypes.CDLL(None, use_errno=True)
    ul = ctypes.c_ulong
    if libc.prctl(38, ul(1), ul(0), ul(0), ul(0)) != 0:  # PR_SET_NO_NEW_PRIVS
        return False
    fprog = Prog(len(prog), arr)
    return libc.prctl(22, ul(2), ctypes.byref(fprog), ul(0), ul(0)) == 0  # SECCOMP_MODE_FILTER


def _make_emitter(fd: int, key: bytes):
    """(emit, started): write one authenticated line to the result pipe; emit
    exits at once after (no cleanup, no atexit: nothing of the program runs
    after a result is written). The key lives only in these closures."""

    def line(body: bytes, _w=os.write, _fd=fd, _mac=hmac.new, _k=key, _h=hashlib.sha256) -> None:
        data = memoryview(body + b" " + _mac(_k, body, _h).hexdigest().encode() + b"\n")
        while data:
            data = data[_w(_fd, data) :]

    def emit(res: dict, _line=line, _d=json.dumps, _exit=os._exit) -> None:
        try:
            _line(b"R " + _d(res).encode())
        except BaseException:  # noqa: BLE001 - the channel was tampered with: the parent sees no result
            _exit(3)
        _exit(0)

    def started(_line=line) -> None:
        _line(b"S")

    return emit, started


_REPORT_EVENT = "loop.sandbox.report"  # how the program-side emitters reach the hook, which holds the key


def _audit_emit(res: dict, _audit=sys.audit, _exit=os._exit) -> None:
    """`emit` once the audit hook is installed: the hook writes the line and exits. What the program
    can reach (its builtins' guards, the frames below it) holds this, not the key."""
    _audit(_REPORT_EVENT, "R", res)
    _exit(3)  # no hook took it: the parent sees no result, never a silent return


def _audit_started(_audit=sys.audit) -> None:
    _audit(_REPORT_EVENT, "S", None)


def _make_audit_hook(roots: tuple, emit, started):
    """Build the hook. Everything it uses is bound as a default argument
    (rebinding those is itself a denied event), so a program that tampers with
    module globals or builtins cannot disarm it; hooks cannot be removed."""

    def inside(path, _rp=os.path.realpath, _np=os.path.normpath, _ap=os.path.abspath, _fs=os.fsdecode, _roots=roots):
        try:
            p = _fs(path)
        except Exception:  # noqa: BLE001 - unreadable path: not inside
            return False
        try:
            p = _rp(p)
        except Exception:  # noqa: BLE001 - readlink refused (seccomp): lexical, the program makes no links
            p = _np(_ap(p))
        return any(p == r or p.startswith(r + "/") for r in _roots)

    def hook(
        event,
        args,
        _emit=emit,
        _started=started,
        _report=_REPORT_EVENT,
        _inside=inside,
        _deny=_DENY_EVENTS,
        _imports=_DENY_RUNTIME_IMPORTS,
        _frames=_FRAME_ATTRS,
        _mask=_O_WRITE,
        _isinst=isinstance,
        _int=int,
        _str=str,
        _any=any,
        _getattr=getattr,
        _me=__file__,
    ):
        reason = None
        if event == _report:  # _audit_emit / _audit_started: what they ask is written with the key
            if args[0] == "S":
                _started()
                return
            _emit(args[1])  # exits
        if event == "open":
            path, mode, flags = args
            if _isinst(path, _int):
                reason = "denied:open fd"
            elif (mode and _any(c in mode for c in "wax+")) or (flags or 0) & _mask:
                reason = "denied:open write"
            elif not _inside(path):
                reason = "denied:open read"
        elif event in ("os.listdir", "os.scandir"):
            if args[0] is None or not _inside(args[0]):
                reason = "denied:listdir"
        elif event == "import":
            if args[0].partition(".")[0] in _imports:
                reason = "denied:import " + args[0]
        elif event in ("object.__setattr__", "object.__delattr__"):  # disarming the hook
            code = _getattr(args[0], "__code__", None)
            if args[1] == "__code__" or (
                args[1] in ("__defaults__", "__kwdefaults__") and _getattr(code, "co_filename", "") == _me
            ):
                reason = "denied:setattr " + args[1]
        elif event == "object.__getattr__":
            if args[1] in _frames:
                reason = "denied:frame " + args[1]
        elif event not in ("exec", "compile", "builtins.id", "marshal.loads", "sys._getframe"):
            for prefix, why in _deny:
                if event.startswith(prefix):
                    reason = why or "denied:" + event
                    break
        if reason:
            try:
                detail = _str(args)[:300]
            except BaseException:  # noqa: BLE001 - a hostile __repr__ must not stop the exit
                detail = ""
            _emit({"reason": reason, "detail": detail})

    return hook


def _safe_builtins(allow: frozenset, emit) -> dict:
    """The program's builtins: no eval/exec/open/...; guarded import and getattr."""
    real_import, real_getattr = builtins.__import__, builtins.getattr

    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        bad = (
            level
            or _import_reason(name, allow)
            or any(f != "*" and (f.startswith("_") or f in DENY_ATTRS) for f in fromlist or ())
        )
        if bad:
            emit({"reason": f"denied:import {name}"})
        return real_import(name, globals, locals, fromlist, level)

    def _getattr(obj, name, *default):
        if not isinstance(name, str) or name.startswith("_") or name in DENY_ATTRS:
            emit({"reason": f"denied:getattr {name}"})
        return real_getattr(obj, name, *default)

    def _hasattr(obj, name):
        try:
            _getattr(obj, name)
            return True
        except AttributeError:
            return False

    safe = {k: v for k, v in vars(builtins).items() if not k.startswith("_") and k not in DENY_NAMES}
    safe.update(
        __import__=_import,
        __build_class__=builtins.__build_class__,
        getattr=_getattr,
        hasattr=_hasattr,
        __name__="builtins",
    )
    return safe


def _guard_operator(emit) -> None:
    """attrgetter/methodcaller take attribute names as run-time strings
    (``chr(95) * 2 + 'class'``): replaced by denials (the module the program imports is this one)."""

    def denied(what):
        def refuse(*args, **kwargs):
            emit({"reason": f"denied:{what}", "detail": repr(args)[:300]})

        return refuse

    operator.attrgetter = denied("attrgetter")  # type: ignore[assignment,misc]
    operator.methodcaller = denied("methodcaller")  # type: ignore[assignment,misc]


_META_FUNCS = ("stat", "lstat", "access", "readlink", "statvfs")


def _guard_metadata(allowed: tuple) -> None:
    """os.stat & co. raise no audit event: wrap them to answer PermissionError
    outside the scratch folder and the Python install (``allowed``)."""

    def wrap(
        fn, _np=os.path.normpath, _ap=os.path.abspath, _fs=os.fsdecode, _allowed=allowed, _isinst=isinstance, _int=int
    ):
        def guarded(path, *args, **kwargs):
            ok = False
            if not _isinst(path, _int) and not kwargs.get("dir_fd"):
                try:
                    p = _np(_ap(_fs(path)))
                    ok = any(p == r or p.startswith(r + "/") for r in _allowed)
                except Exception:  # noqa: BLE001 - not a path
                    ok = False
            if not ok:
                raise PermissionError(1, "sandbox: no file metadata outside the scratch folder", str(path)[:200])
            return fn(path, *args, **kwargs)

        return guarded

    for name in _META_FUNCS:
        if hasattr(os, name):
            setattr(os, name, wrap(getattr(os, name)))


def _guard_sympify(emit) -> None:
    """sympify/parse_expr eval strings with full builtins: accept only plain
    math (no quotes, attributes, dunders, denied names) and eval it without."""
    import sympy
    from sympy.parsing import sympy_parser

    original = sympy_parser.parse_expr
    namespace: dict = {}
    exec("from sympy import *", namespace)
    namespace = {k: v for k, v in namespace.items() if k not in DENY_ATTRS}
    namespace.update(__builtins__={}, max=sympy.Max, min=sympy.Min, abs=abs, int=int, float=float, pow=pow, round=round)
    ok_chars = re.compile(r"[\w\s.+\-*/^()\[\],=<>!%&|~]*")

    def parse_expr(
        s, local_dict=None, transformations=sympy_parser.standard_transformations, global_dict=None, evaluate=True
    ):
        words = re.findall(r"[^\W\d]\w*", s) if isinstance(s, str) else ["?"]
        if (
            not isinstance(s, str)
            or len(s) > 2000
            or not ok_chars.fullmatch(s)
            or re.search(r"\.\s*[^\W\d]", s)
            or "lambda" in words
            or any(w.startswith("_") or w in DENY_ATTRS for w in words)
        ):
            emit({"reason": "denied:sympify", "detail": repr(s)[:300]})
        return original(
            s, local_dict=local_dict, transformations=transformations, global_dict=dict(namespace), evaluate=evaluate
        )

    sympy_parser.parse_expr = parse_expr


class _CappedText:
    """sys.stdout stand-in that keeps the first `cap` characters."""

    def __init__(self, cap: int):
        self.cap, self.size = cap, 0
        self.parts: list[str] = []

    def write(self, s: str) -> int:
        if self.size < self.cap:
            self.parts.append(str(s)[: self.cap - self.size])
            self.size += len(self.parts[-1])
        return len(s)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.parts)


def _child_main() -> None:
    cfg = json.loads(sys.stdin.buffer.read())
    emit, started = _make_emitter(cfg.pop("result_fd"), bytes.fromhex(cfg.pop("key")))
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray writes to fd 1 vanish
    try:
        glb, missing = _child_setup(cfg, emit, started)
    except BaseException as e:  # noqa: BLE001 - report, never hang
        emit({"reason": f"sandbox:startup {type(e).__name__}", "detail": str(e)[:300]})
    if "audit" in cfg["layers"]:  # from here the key is only in the hook, not in this frame
        emit, started = _audit_emit, _audit_started
    out = sys.stdout = sys.stderr = _CappedText(cfg["max_output"])
    if "cpu_timer" in cfg["layers"]:
        signal.setitimer(signal.ITIMER_PROF, cfg["timeout_s"])
    started()  # the parent's program wall clock starts now
    res = _execute(cfg["program"], glb, cfg["max_output"])
    res.update(stdout=out.text()[:1000], guards=missing)
    emit(res)


def _child_setup(cfg: dict, emit, started) -> tuple[dict, list[str]]:
    """Limits, imports, guards; the audit hook goes last (it would deny the
    ctypes calls that install seccomp) and alone holds `emit`/`started` (the
    guards report through it). Returns the program's globals."""
    layers, missing = set(cfg["layers"]), []
    deny = _audit_emit if "audit" in layers else emit
    if "rlimit" in layers:
        for res, lim in (
            (resource.RLIMIT_AS, cfg["memory_mb"] * 2**20),
            (resource.RLIMIT_FSIZE, 0),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_NOFILE, 64),
            (resource.RLIMIT_NPROC, 1),
        ):
            resource.setrlimit(res, (lim, lim))
    sys.path.extend(cfg["path"])
    allow = frozenset(cfg["allow"])
    for mod in sorted(allow):  # later imports are cache hits
        try:
            __import__(mod)
        except ImportError:
            pass
    if "builtins" in layers and "sympy" in allow:
        _guard_sympify(deny)
    if "builtins" in layers:
        _guard_operator(deny)
    builtins_ = _safe_builtins(allow, deny) if "builtins" in layers else __builtins__
    if "rlimit" in layers:  # soft = hard: the kernel SIGKILLs at the limit, no signal to ignore
        limit = math.ceil(time.process_time() + cfg["timeout_s"])
        resource.setrlimit(resource.RLIMIT_CPU, (limit, limit))
    if "seccomp" in layers and not _install_seccomp():
        missing.append("seccomp")
    if "audit" in layers:
        _guard_metadata((os.getcwd(), *cfg["roots"]))
        sys.addaudithook(_make_audit_hook(tuple(cfg["roots"]), emit, started))
    return {"__builtins__": builtins_, "__name__": "__program__"}, missing


def _execute(program: str, glb: dict, max_output: int) -> dict:
    try:
        exec(compile(program, "<program>", "exec"), glb)
        if "answer" not in glb:
            return {"reason": "no_answer"}
        text = str(glb["answer"])
    except MemoryError:
        glb.clear()  # free the hog before reporting
        return {"reason": "memory_limit"}
    except BaseException as e:  # noqa: BLE001 - the program's failure is data
        glb.clear()
        try:
            detail = str(e)[:300]
        except BaseException:  # noqa: BLE001 - a hostile __str__
            detail = ""
        return {"reason": f"error:{type(e).__name__}", "detail": detail}
    if len(text) > max_output:
        return {"reason": "output_too_long", "detail": f"{len(text)} chars"}
    return {"reason": "ok", "output": text}


if __name__ == "__main__" and sys.argv[1:] == [_CHILD_ARG]:
    _child_main()
