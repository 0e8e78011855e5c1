"""Hostile-program suite for loop.sandbox.

Every hostile row must be contained twice over: the result is a failure with
the expected reason, AND the machine is healthy afterwards (the sentinel file
outside the sandbox is intact, nothing new appeared next to it, the victim
process is alive, no sandbox process and no sandbox temp dir is left over).
The second table switches layers off to show each inner layer contains the
attack on its own. SENTINEL / DIR / PORT / VICTIM are substituted per test.
"""
import concurrent.futures as cf
import functools
import glob
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from loop import sandbox
from loop.sandbox import DEFAULT_ALLOWED_IMPORTS, run, static_check

T = 1.0      # CPU seconds per run: keeps the suite light
WALL = 30.0  # wall-clock backstop, far away so a loaded machine still reports cpu_limit

ATTRGETTER_WALK = (
    "import operator\nd = '_' * 2\nga = lambda o, n: operator.attrgetter(d + n + d)(o)\n"
    "base = ga(ga((), 'class'), 'base')\n"
    "w = [c for c in ga(base, 'subclasses')() if ga(c, 'name') == '_wrap_close'][0]\n"
    "answer = ga(ga(w, 'init'), 'globals')['system']('rm SENTINEL')")

# (program, expected reason prefix) through the public API, all layers on.
HOSTILE = [
    # --- files
    ("answer = open('/etc/passwd').read()", "static:name open"),             # read a system file
    ("import io\nanswer = io.open('/etc/passwd').read()", "static:import io"),  # read via io
    ("with open('SENTINEL', 'w') as f:\n    f.write('pwned')\nanswer = 1", "static:name open"),  # overwrite
    ("import os\nos.remove('SENTINEL')\nanswer = 1", "static:import os"),      # delete
    ("import shutil\nshutil.rmtree('DIR')\nanswer = 1", "static:import shutil"),  # delete a tree
    ("import pathlib\npathlib.Path('SENTINEL').write_text('x')", "static:import pathlib"),
    ("from os import system\nsystem('rm SENTINEL')", "static:import os"),       # from-import
    # --- network
    ("import socket\nsocket.create_connection(('127.0.0.1', PORT))", "static:import socket"),
    ("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:PORT')", "static:import urllib"),
    # --- processes
    ("import os\nwhile True:\n    os.fork()", "static:import os"),            # fork bomb
    ("import subprocess\nsubprocess.run(['rm', 'SENTINEL'])", "static:import subprocess"),
    ("import multiprocessing\nmultiprocessing.Process(target=print).start()", "static:import multiprocessing"),
    ("import ctypes\nctypes.CDLL(None).system(b'rm SENTINEL')", "static:import ctypes"),
    ("import threading\nthreading.Thread(target=print).start()", "static:import threading"),
    ("import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)", "static:import signal"),
    # --- builtins and introspection escapes
    ("__import__('os').system('rm SENTINEL')", "static:dunder __import__"),
    ("getattr(__builtins__, 'ev' + 'al')('1')", "static:dunder __builtins__"),
    ("answer = ().__class__.__bases__[0].__subclasses__()", "static:dunder __class__"),
    ("exec('import os')", "static:name exec"),
    ("answer = eval('1 + 1')", "static:name eval"),
    ("answer = compile('1', 'f', 'eval')", "static:name compile"),
    ("import importlib\nimportlib.import_module('os')", "static:import importlib"),
    ("import builtins\nbuiltins.open('SENTINEL', 'w')", "static:import builtins"),
    ("import sys\nanswer = sys.modules['os']", "static:import sys"),
    ("answer = type.mro(type)", "static:attribute mro"),                       # type(...) tricks
    ("g = (i for i in [1])\nanswer = g.gi_frame.f_globals", "static:attribute gi_frame"),
    ("answer = getattr(1, '__class__')", "static:string __class__"),           # getattr with dunder
    ("answer = '{0.__class__}'.format(1)", "static:string __class__"),         # format-string getattr
    ("answer = globals()", "static:name globals"),
    ("breakpoint()", "static:name breakpoint"),
    ("answer = input()", "static:name input"),
    ("exit(0)", "static:name exit"),
    ("import time\nanswer = time.time()", "static:import time"),               # clock nondeterminism
    ("answer = (1).real._x", "static:private _x"),
    ("answer = 1 +", "static:syntax"),
    ("answer = 1\n" + "#" * 25_000, "static:too_long"),
    # --- sympy used to hide evaluation (sympify evals strings with full builtins)
    ("import sympy\nanswer = sympy.sympify(\"__import__('os').system('rm SENTINEL')\")", "static:string __import__"),
    ("import sympy\nanswer = sympy.sympify(\"open('SENTINEL').read()\")", "denied:sympify"),
    ("import sympy\nanswer = sympy.S(chr(95) * 2 + 'import' + chr(95) * 2 + '(1)')", "denied:sympify"),
    ("import sympy\ntry:\n    sympy.sympify(\"open('x')\")\nexcept BaseException:\n    pass\nanswer = 1",
     "denied:sympify"),                                                        # denial is not catchable
    ("from sympy.parsing.sympy_parser import parse_expr", "static:import sympy.parsing"),
    ("from sympy.external import import_module\nimport_module('os')", "static:import sympy.external"),
    ("import sympy\nf = sympy.lambdify([], 1)", "static:attribute lambdify"),
    ("import sympy\nanswer = sympy.utilities.misc", "static:attribute utilities"),
    # --- dunders built at run time: attrgetter is a denied name (the audit hook backs it: IN_DEPTH)
    (ATTRGETTER_WALK, "static:attribute attrgetter"),
    # --- resources
    ("x = ' ' * 10**10\nanswer = len(x)", "memory_limit"),                   # one huge allocation
    ("x = []\nwhile True:\n    x.append([0] * 10**6)", "memory_limit"),     # list growth
    ("while True:\n    pass", "cpu_limit"),                                    # infinite loop
    ("answer = 10**10**10", "cpu_limit"),                                      # huge exponent in C
    ("answer = sum(i * i for i in range(10**12))", "cpu_limit"),              # CPU burn
    ("while True:\n    print('x' * 1000)", "cpu_limit"),                      # endless printing
    ("def f(n):\n    return f(n + 1)\nanswer = f(0)", "error:RecursionError"),  # recursion bomb
    ("answer = 'x' * 10**6", "output_too_long"),                               # huge answer
    # --- nondeterminism (needs two runs)
    ("import random\nanswer = random.random()", "nondeterministic"),          # unseeded random
    ("answer = hash('abc')", "nondeterministic"),                              # PYTHONHASHSEED random
    ("answer = id(object())", "nondeterministic"),                             # ASLR addresses
    # --- contract violations
    ("x = 1", "no_answer"),
    ("answer = 1 / 0", "error:ZeroDivisionError"),
    ("raise SystemExit(0)", "error:SystemExit"),                               # cannot fake a clean exit
]

WIDE = DEFAULT_ALLOWED_IMPORTS | {"os", "io", "socket", "ctypes", "subprocess", "threading",
                                  "signal", "sys", "builtins", "resource", "gc"}
NO_STATIC = frozenset({"static"})
ONLY_SECCOMP = frozenset({"static", "audit"})          # + builtins/rlimits still on
ONLY_NETNS = frozenset({"static", "audit", "seccomp"})

# (program, layers switched off, expected reason prefix); imports widened to WIDE.
IN_DEPTH = [
    # audit hook
    ("import io\nanswer = io.open('/etc/passwd').read()", NO_STATIC, "denied:open read"),
    ("import os\nanswer = os.open('/etc/shadow', os.O_RDONLY)", NO_STATIC, "denied:open read"),
    ("import io\nio.open('SENTINEL', 'w').write('pwned')", NO_STATIC, "denied:open write"),
    ("import os\nos.remove('SENTINEL')", NO_STATIC, "denied:os.remove"),
    ("import os\nos.rename('SENTINEL', 'DIR/moved')", NO_STATIC, "denied:os.rename"),
    ("import os\nanswer = os.listdir('/')", NO_STATIC, "denied:listdir"),
    ("import os\nfor _ in range(20):\n    if os.fork() == 0:\n        os._exit(0)", NO_STATIC, "denied:fork"),
    ("import os\nos.system('rm SENTINEL')", NO_STATIC, "denied:subprocess"),
    ("import subprocess\nsubprocess.run(['rm', 'SENTINEL'])", NO_STATIC, "denied:subprocess"),
    ("import socket\nsocket.create_connection(('127.0.0.1', PORT))", NO_STATIC, "denied:socket"),
    ("import ctypes\nctypes.CDLL(None).system(b'rm SENTINEL')", NO_STATIC, "denied:ctypes"),
    ("import os\nos.kill(VICTIM, 9)", NO_STATIC, "denied:os.kill"),
    ("import sys\nsys.addaudithook(print)", NO_STATIC, "denied:sys.addaudithook"),
    ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))", NO_STATIC,
     "denied:resource.setrlimit"),                                            # lift the CPU limit
    ("answer = [c for c in ().__class__.__bases__[0].__subclasses__()\n"
     "          if c.__name__ == '_wrap_close'][0].__init__.__globals__['system']('rm SENTINEL')",
     NO_STATIC, "denied:subprocess"),                                        # classic subclass walk
    ("import sympy\nsympy.sympify(\"__import__('os').system('rm SENTINEL')\")",
     frozenset({"static", "builtins"}), "denied:subprocess"),               # real sympify eval
    (ATTRGETTER_WALK, NO_STATIC, "denied:attrgetter"),                    # attrgetter replaced at run time
    (ATTRGETTER_WALK, frozenset({"static", "builtins"}), "denied:subprocess"),  # ...and the audit hook
    ("import gc\nhook = [o for o in gc.get_objects() if getattr(o, '__name__', '') == 'hook'][0]",
     frozenset({"static", "builtins"}), "denied:gc"),                        # the hook cannot be found...
    ("import sys\nfn = sys._getframe(1).f_globals['_audit_emit']\nfn.__defaults__ = None",
     frozenset({"static", "builtins"}), "denied:setattr __defaults__"),      # ...nor the sandbox's own
    ("import sys\nfn = sys._getframe(1).f_globals['_audit_emit']\nfn.__code__ = (lambda *a: None).__code__",
     frozenset({"static", "builtins"}), "denied:setattr __code__"),           # functions rebound
    # builtins layer (default imports)
    ("__import__('shutil').rmtree('DIR')", NO_STATIC, "denied:import shutil"),  # not on WIDE
    ("answer = eval('1')", NO_STATIC, "error:NameError"),
    ("answer = __import__('sympy').sympify(\"open('/etc/passwd')\")", NO_STATIC,
     "denied:import sympy"),                     # no static sympy import -> not loaded, no guard

    ("answer = getattr(1, '__class__')", NO_STATIC, "denied:getattr __class__"),
    # rlimit / cpu backstop
    ("import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\nwhile True:\n    pass",
     NO_STATIC, "cpu_limit"),                                                # RLIMIT_CPU still fires
    # seccomp alone (audit hook off)
    ("import os\nfor _ in range(20):\n    if os.fork() == 0:\n        os._exit(0)", ONLY_SECCOMP,
     "error:PermissionError"),
    ("import io\nio.open('SENTINEL', 'w').write('pwned')", ONLY_SECCOMP, "error:PermissionError"),
    ("import os\nos.remove('SENTINEL')", ONLY_SECCOMP, "error:PermissionError"),
    ("import os\nos.kill(VICTIM, 9)", ONLY_SECCOMP, "error:PermissionError"),
    ("import subprocess\nsubprocess.run(['rm', 'SENTINEL'])", ONLY_SECCOMP, "error:PermissionError"),
    ("import ctypes\nassert ctypes.CDLL(None).system(b'rm SENTINEL') == 0", ONLY_SECCOMP,
     "error:AssertionError"),                                                # libc system() cannot spawn
    ("import socket\nsocket.create_connection(('127.0.0.1', PORT))", ONLY_SECCOMP, "error:PermissionError"),
    ("import threading\nthreading.Thread(target=print).start()", ONLY_SECCOMP, "error:RuntimeError"),
    ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))", ONLY_SECCOMP,
     "error:ValueError"),                                                    # prlimit64 set -> EPERM
    # network namespace alone
    ("import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=1)", ONLY_NETNS, "error:OSError"),
]

POSITIVE = [
    # (program, expected output)
    ("from sympy import Rational\nanswer = Rational(1, 3) + Rational(1, 6)", "1/2"),
    ("import sympy as sp\nx = sp.symbols('x')\nanswer = sorted(sp.solve(x**2 - 5*x + 6, x))", "[2, 3]"),
    ("import sympy as sp\nx = sp.Symbol('x')\nanswer = sp.simplify(sp.sin(x)**2 + sp.cos(x)**2)", "1"),
    ("import sympy\nanswer = sympy.factorial(10)", "3628800"),
    ("import sympy as sp\nx = sp.Symbol('x')\nanswer = sp.integrate(x**2, (x, 0, 3))", "9"),
    ("import sympy\nanswer = sympy.sympify('2/3 + 1/6')", "5/6"),            # plain-math strings still parse
    ("import sympy\nanswer = sympy.factor(sympy.sympify('x^2 + 2*x + 1'))", "(x + 1)**2"),
    ("from fractions import Fraction\nimport math\nanswer = Fraction(math.comb(10, 3), 4)", "30"),
    ("from sympy.utilities.iterables import partitions\nanswer = sum(1 for _ in partitions(6))", "11"),
    ("from sympy.abc import x, y\nanswer = ((x + y)**2).expand()", "x**2 + 2*x*y + y**2"),  # lazy submodule
    ("class P:\n    def __init__(self, a):\n        self.a = a\nanswer = P(3).a", "3"),
    ("import random\nrandom.seed(7)\nanswer = random.randint(1, 10**9)",
     str(random.Random(7).randint(1, 10**9))),                                # seeded random is fine
    ("print('working...')\nanswer = sorted({'b', 'a'})", "['a', 'b']"),
]


def _sandbox_pids() -> list[int]:
    """Live processes running this sandbox's child bootstrap, but for those still in another
    process's sandbox folder (a `loop-sandbox-*` outside our TMPDIR: a second pytest or a
    benchmark on the same machine). One that moved elsewhere still counts."""
    me = os.path.abspath(sandbox.__file__)
    ours = os.path.realpath(tempfile.gettempdir()) + os.sep
    pids = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if me.encode() not in cmd or b"--sandbox-child" not in cmd:
            continue
        try:
            cwd = os.readlink(d + "/cwd")
        except OSError:
            cwd = ""  # unreadable: counted
        if "/loop-sandbox-" in cwd and not cwd.startswith(ours):
            continue  # another process's sandbox run
        pids.append(int(d[6:]))
    return pids


@pytest.fixture()
def world(tmp_path):
    """Sentinel file, a listening port, a victim process; checked for health after."""
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("intact")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    tmp_before = set(glob.glob(os.path.join(tempfile.gettempdir(), "loop-sandbox-*")))
    subs = {"SENTINEL": str(sentinel), "DIR": str(tmp_path),
            "PORT": str(listener.getsockname()[1]), "VICTIM": str(victim.pid)}
    yield lambda program: _substitute(program, subs)
    try:
        assert sentinel.read_text() == "intact"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["sentinel.txt"]
        assert victim.poll() is None, "victim process was killed"
        with pytest.raises(BlockingIOError):
            listener.accept()                     # nobody connected
        assert _sandbox_pids() == []
        tmp_after = set(glob.glob(os.path.join(tempfile.gettempdir(), "loop-sandbox-*")))
        assert tmp_after <= tmp_before, "sandbox temp dir left behind"
    finally:
        victim.kill()
        victim.wait()
        listener.close()


def _substitute(program: str, subs: dict) -> str:
    for key, value in subs.items():
        program = program.replace(key, value)
    return program


def _row_id(row) -> str:
    return row[-1] + ":" + row[0].splitlines()[0][:40]


@pytest.mark.parametrize("program,expected", HOSTILE, ids=[_row_id(r) for r in HOSTILE])
def test_hostile_program_is_contained(world, program, expected):
    runs = 2 if expected == "nondeterministic" else 1
    res = run(world(program), timeout_s=T, runs=runs, wall_s=WALL)
    assert not res.ok
    assert res.output is None
    assert res.reason.startswith(expected), (res.reason, res.detail, res.stderr_tail)


@functools.lru_cache(maxsize=1)
def _layers_available() -> tuple[str, ...]:
    return run("answer = 1", timeout_s=T, runs=1).layers


@pytest.mark.parametrize("program,disabled,expected", IN_DEPTH, ids=[_row_id(r) for r in IN_DEPTH])
def test_each_layer_contains_on_its_own(world, program, disabled, expected):
    have = _layers_available()
    if "audit" in disabled and "seccomp" not in have:
        pytest.skip("seccomp unavailable: never run hostile code with the audit hook off")
    if "seccomp" in disabled and "netns" not in have:
        pytest.skip("network namespace unavailable")
    res = run(world(program), timeout_s=T, runs=1, wall_s=WALL, allow_imports=WIDE,
              _disable=disabled)
    assert not res.ok
    assert res.reason.startswith(expected), (res.reason, res.detail, res.stderr_tail)


@pytest.mark.parametrize("program,expected", POSITIVE, ids=[p[1] for p in POSITIVE])
def test_valid_programs_give_their_answer(program, expected):
    res = run(program, timeout_s=5)
    assert (res.ok, res.reason, res.output) == (True, "ok", expected), (res.detail, res.stderr_tail)


def test_prints_are_captured_not_the_answer():
    res = run("print('thinking')\nanswer = 42", timeout_s=5, runs=1)
    assert (res.output, res.stdout) == ("42", "thinking\n")


def test_all_layers_active_on_this_machine():
    layers = _layers_available()
    for layer in ("static", "rlimit", "audit", "builtins", "cpu_timer"):
        assert layer in layers
    if sys.platform == "linux" and os.uname().machine == "x86_64":
        assert "seccomp" in layers


def test_wall_clock_timeout_kills_the_process_group():
    t0 = time.monotonic()
    res = run("while True:\n    pass", timeout_s=30, wall_s=1.0, runs=2)
    assert res.reason == "timeout"
    assert time.monotonic() - t0 < 10
    assert _sandbox_pids() == []


def test_safe_to_call_from_threads():
    programs = {f"answer = {i} * {i}": str(i * i) for i in range(4)}
    with cf.ThreadPoolExecutor(4) as pool:
        results = dict(zip(programs, pool.map(lambda p: run(p, runs=1).output, programs)))
    assert results == programs


def _worker(program: str) -> str | None:
    return run(program, runs=1).output


def test_safe_to_call_from_worker_processes():
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        assert pool.submit(_worker, "answer = 6 * 7").result(timeout=60) == "42"


@pytest.mark.parametrize("program,expected", [
    ("import sympy\nimport math\nanswer = 1", None),                        # allowlisted imports
    ("import numpy", "static:import numpy"),                                 # not on the allowlist
    ("from sympy import *\nanswer = 1", None),                               # star import is fine
    ("from sympy import lambdify", "static:attribute lambdify"),
    ("from . import x", "static:import relative"),
    ("match 1:\n    case int(__class__=c):\n        pass", "static:dunder __class__"),
    ("x = [1]\nx.remove(1)\nanswer = x", None),                              # ordinary methods
])
def test_static_check_table(program, expected):
    assert static_check(program) == expected


def test_static_check_respects_custom_allowlist():
    assert static_check("import numpy", DEFAULT_ALLOWED_IMPORTS | {"numpy"}) is None


# Side doors (issue 21): (program, layers switched off, imports, expected reason prefix, extra check).
# Each was open before: the program got its answer, forged a result, or outlived its limit.
D2 = "chr(95) * 2"
SIDE_DOORS = [
    # attribute traversal by run-time strings
    (f"import operator\nd = {D2}\nanswer = operator.attrgetter(d + 'class' + d)(1)", frozenset(),
     DEFAULT_ALLOWED_IMPORTS, "static:attribute attrgetter", None),
    (f"import operator\nd = {D2}\nanswer = operator.methodcaller(d + 'subclasses' + d)(object)", frozenset(),
     DEFAULT_ALLOWED_IMPORTS, "static:attribute methodcaller", None),
    (f"from operator import *\nanswer = attrgetter({D2} + 'class' + {D2})(1)", frozenset(),
     DEFAULT_ALLOWED_IMPORTS, "static:name attrgetter", None),                 # star import: bare name
    (f"d = {D2}\nanswer = ('{{0.' + d + 'class' + d + '}}').format(1)", frozenset(),
     DEFAULT_ALLOWED_IMPORTS, "static:attribute format", None),                # str.format field traversal
    (f"d = {D2}\nanswer = ('{{x.' + d + 'class' + d + '}}').format_map({{'x': 1}})", frozenset(),
     DEFAULT_ALLOWED_IMPORTS, "static:attribute format_map", None),
    (f"import string\nanswer = string.Formatter().vformat('{{0.' + {D2} + 'class' + {D2} + '}}', (1,), {{}})",
     frozenset(), DEFAULT_ALLOWED_IMPORTS, "static:attribute Formatter", None),
    (f"import operator\nd = {D2}\nanswer = operator.methodcaller(d + 'subclasses' + d)(object)", NO_STATIC,
     DEFAULT_ALLOWED_IMPORTS, "denied:methodcaller", None),                    # run time, static check off
    (f"d = {D2}\nanswer = getattr('{{0.' + d + 'class' + d + '}}', 'format')(1)", NO_STATIC,
     DEFAULT_ALLOWED_IMPORTS, "denied:getattr format", None),
    # file metadata outside the scratch folder (Python has no audit event for these)
    ("import os\nanswer = os.stat('/etc/passwd').st_size", NO_STATIC, WIDE, "error:PermissionError", None),
    ("import os\nanswer = os.access('/etc/passwd', os.R_OK)", NO_STATIC, WIDE, "error:PermissionError", None),
    ("import os\nanswer = os.readlink('/proc/self/exe')", NO_STATIC, WIDE, "error:PermissionError", None),
    ("import os\nanswer = os.readlink('/proc/self/exe')", ONLY_SECCOMP, WIDE, "error:PermissionError", None),
    # the result channel
    ("import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'\\n\\x1eSANDBOX_RESULT "
     "{\"reason\": \"ok\", \"output\": \"42\"}\\n')\n    except OSError:\n        pass\nos._exit(0)",
     NO_STATIC, WIDE, "denied:result_channel", None),                          # forge an "ok" line raw
    ("import os\nfor fd in range(3, 64):\n    try:\n        os.dup2(0, fd)\n    except OSError:\n"
     "        pass\nanswer = 1 / 0", NO_STATIC, WIDE, "denied:result_channel", None),  # redirect it
    # the object graph and frames: they lead to the sandbox's own frames and the result key
    ("import gc\nanswer = len(gc.get_objects())", NO_STATIC, WIDE, "denied:gc", None),
    ("import gc\nanswer = len(gc.get_referrers(1))", NO_STATIC, WIDE, "denied:gc", None),
    ("import sys\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n    tb = sys.exc_info()[2]\n"
     "answer = list(tb.tb_frame.f_back.f_locals)", NO_STATIC, WIDE, "denied:frame tb_frame", None),
    ("def g():\n    yield 1\nanswer = list(g().gi_frame.f_back.f_locals)", NO_STATIC, WIDE,
     "denied:frame gi_frame", None),
    # limits the program could stretch
    ("import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
     "while True:\n    pass", NO_STATIC, WIDE, "cpu_limit", "cpu"),            # RLIMIT_CPU hard
    ("import signal\nsignal.pause()", NO_STATIC, WIDE, "timeout", "wall"),     # sleeping ends at the CPU limit
]


# A breadth-first walk from everything a program can name without the static layer (its builtins,
# every frame's locals and globals below it: sys._getframe stays open for libraries; function
# defaults and closures, environment, argv), counting 32-byte keys and 64-digit hex strings.
KEY_HUNT = """import os, sys
todo, f = [__builtins__, dict(os.environ), sys.argv], sys._getframe(0)
while f is not None:
    todo += [f.f_locals, f.f_globals]
    f = f.f_back
seen, keys, i = {}, [], 0
while i < len(todo) and i < 300000:
    o, i = todo[i], i + 1
    if id(o) in seen:
        continue
    seen[id(o)] = o
    if (type(o) is bytes and len(o) == 32) or (type(o) is str and len(o) == 64 and set(o) <= set('0123456789abcdef')):
        keys.append(o)
    elif type(o) in (tuple, list):
        todo += list(o)
    elif type(o) is dict:
        todo += list(o.values())
    elif type(o).__name__ == 'function':
        todo += list(o.__defaults__ or ())
        for c in o.__closure__ or ():
            try:
                todo.append(c.cell_contents)
            except ValueError:
                pass
answer = len(keys)
"""


def test_result_key_is_out_of_the_programs_reach():
    """With the static layer off, the result key was one closure away (the guards' and the frames'
    `emit`); now only the audit hook holds it, so a program cannot write an authenticated line."""
    res = run(KEY_HUNT, timeout_s=T, runs=1, wall_s=WALL, allow_imports=WIDE, _disable=NO_STATIC)
    assert res.ok and res.output == "0", (res.reason, res.output, res.detail)


@pytest.mark.parametrize("program,disabled,imports,expected,check", SIDE_DOORS,
                         ids=[r[3] + ":" + r[0].splitlines()[-1][:40] for r in SIDE_DOORS])
def test_side_doors_are_closed(world, program, disabled, imports, expected, check):
    have = _layers_available()
    if "audit" in disabled and "seccomp" not in have:
        pytest.skip("seccomp unavailable: never run hostile code with the audit hook off")
    wall = None if check == "wall" else WALL
    res = run(world(program), timeout_s=T, runs=1, wall_s=wall, allow_imports=imports, _disable=disabled)
    assert not res.ok and res.output is None
    assert res.reason.startswith(expected), (res.reason, res.detail, res.stderr_tail)
    if check == "cpu":   # killed at the (whole-second) kernel limit, not one second later
        assert res.cpu_s <= T + 1.5, res.cpu_s
    if check == "wall":  # at timeout_s + PROGRAM_GRACE_S after start, long before the 3*T+5 backstop
        assert res.elapsed_s < 3 * T + 5 - 2, res.elapsed_s


# --- code-reasoning tasks: model-written induction programs and abduction inputs -------------
# (program, inputs, expected reason prefixes) through rewards.codetask.run_on, the path every
# induction answer and model-proposed program takes (f on each input, twice: deterministic).
LIN = "def f(x):\n    return x * 3 + 1"
CODE_TASK_HOSTILE = [
    ("def f(x):\n    return 'y' * 10 ** 7", [1], ("output_too_long",)),                   # huge output
    ("def f(x):\n    return list(range(x))", [10 ** 6], ("output_too_long",)),            # huge via the input
    ("def f(x):\n    while True:\n        print('y' * 1000)", [1], ("cpu_limit", "timeout")),  # print flood
    ("def f(x):\n    while True:\n        pass", [1], ("cpu_limit", "timeout")),         # infinite loop
    ("def f(x):\n    return [0] * 10 ** 10", [1], ("memory_limit", "error:MemoryError")),  # memory bomb
    ("def f(x):\n    return f(x)", [1], ("error:RecursionError",)),                       # unbounded recursion
    ("def f(x):\n    return open('SENTINEL').read()", [1], ("static:name open",)),        # read a file
    ("import os\ndef f(x):\n    os.remove('SENTINEL')", [1], ("static:import os",)),      # delete a file
    ("import os\ndef f(x):\n    os.kill(VICTIM, 9)", [1], ("static:import os",)),         # kill a process
    ("import socket\ndef f(x):\n    return socket.create_connection(('127.0.0.1', PORT))", [1],
     ("static:import socket",)),                                                           # network
    ("def f(x):\n    return ().__class__.__base__.__subclasses__()", [1], ("static:dunder",)),  # escape
    ("import random\ndef f(x):\n    return random.random()", [1], ("nondeterministic",)),  # differs per run
    ("def f(x):\n    raise SystemExit(0)", [1], ("error:SystemExit",)),                   # exit early
    (LIN, ["'); import os; os.remove('SENTINEL') #"], ("error:TypeError",)),             # an input is data only
]


@pytest.mark.parametrize("program,inputs,expected", CODE_TASK_HOSTILE,
                         ids=[r[2][0] + ":" + r[0].splitlines()[-1].strip()[:30] for r in CODE_TASK_HOSTILE])
def test_code_task_programs_are_contained(world, program, inputs, expected):
    from rewards.codetask import run_on
    t0 = time.monotonic()
    res = run_on(world(program), inputs, runs=2, max_output=4096)
    assert not res.ok and res.output is None
    assert res.reason.startswith(expected), (res.reason, res.detail)
    assert time.monotonic() - t0 < 3 * 2.0 + 5 + 5  # the sandbox's wall limit for CHECK_TIMEOUT_S, plus slack


ABDUCTION_INPUTS = [  # an abduction answer is read as a literal in this process and never run as code
    "__import__('os').remove('SENTINEL')",      # a call
    "[x for x in ().__class__.__bases__]",      # a comprehension
    "9" * 10_000,                               # over the size cap
    "(1).real",                                 # an attribute access
    "lambda: 0",                                # a function
]


@pytest.mark.parametrize("answer", ABDUCTION_INPUTS, ids=[a[:30] for a in ABDUCTION_INPUTS])
def test_abduction_inputs_that_are_not_literals_never_reach_the_sandbox(world, monkeypatch, answer):
    from rewards.codetask import judge, spec

    def refuse(*a, **k):
        raise AssertionError("the sandbox was called")

    monkeypatch.setattr(sandbox, "run", refuse)
    gold = spec("abduction", LIN, input="4", output="13")
    assert judge(gold, "\\boxed{" + world(answer) + "}") is None
