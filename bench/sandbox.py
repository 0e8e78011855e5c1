"""Measure sandbox cost: wall time per `run` call and child CPU per run.

Usage: PYTHONPATH=. python bench/sandbox.py [calls]
Sequential calls only (the machine is shared): the numbers are what one caller sees.
"""
import statistics
import sys
import time

from loop.sandbox import run, static_check

PLAIN = "from fractions import Fraction\nanswer = Fraction(1, 3) + Fraction(1, 6)"
SYMPY = "import sympy as sp\nx = sp.Symbol('x')\nanswer = sorted(sp.solve(x**2 - 5*x + 6, x))"


def bench(calls: int, program: str, runs: int) -> None:
    walls, cpus = [], []
    for _ in range(calls):
        res = run(program, runs=runs)
        assert res.ok, res
        walls.append(res.elapsed_s)
        cpus.append(res.cpu_s)
    print(f"{'sympy' if 'sympy' in program else 'plain'} runs={runs}: wall/call median {statistics.median(walls):.3f}s "
          f"(min {min(walls):.3f}, max {max(walls):.3f}); child CPU/run median "
          f"{statistics.median(cpus):.3f}s; layers={res.layers}")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    t0 = time.perf_counter()
    for _ in range(1000):
        static_check("import os\nanswer = 1")
    print(f"static rejection: {(time.perf_counter() - t0) * 1e3:.3f} us/call")
    bench(n, SYMPY, runs=1)
    bench(n, SYMPY, runs=2)
    bench(n, PLAIN, runs=2)
