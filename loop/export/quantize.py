"""llama.cpp's own binaries for GGUF exports: `llama-quantize` (k-quants) and, to run an export
(tests, bench/exports.py), `llama-completion`.

Contract:
- K-quant outtypes (QUANTS: q4_k_m, q5_k_m, q6_k, q4_0) are written by llama.cpp's
  `llama-quantize` from an f32 GGUF that loop.export.gguf writes first (quantizing from f32
  loses nothing before the quantizer's own rounding). Tensors a type cannot hold (rows not a
  multiple of its block, e.g. 256 for k-quants) get llama-quantize's own fallback type.
- Finding a binary (`find_tool`): the explicit path (`--quantize PATH`), else the env var
  (LOOP_LLAMA_QUANTIZE / LOOP_LLAMA_COMPLETION), else the name on PATH, else the copy that
  scripts/setup.sh builds from the llama.cpp sources it unpacks into the loop cache
  (<cache>/llama.cpp/build/bin/). Named but missing, or nowhere: ExportError saying how to get it.
- A failing quantizer raises ExportError with the tail of its output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from loop.export.errors import ExportError
from loop.models import loop_cache

QUANTS = ("q4_k_m", "q5_k_m", "q6_k", "q4_0")
ENVS = {"llama-quantize": "LOOP_LLAMA_QUANTIZE", "llama-completion": "LOOP_LLAMA_COMPLETION"}


def installed(tool: str) -> Path:
    """Where scripts/setup.sh builds `tool` (it may not be there)."""
    return loop_cache() / "llama.cpp" / "build" / "bin" / tool


def how_to_get(tool: str) -> str:
    return (
        f"build llama.cpp's {tool}: LOOP_BUILD_LLAMA_CPP=1 bash scripts/setup.sh builds it (needs cmake "
        f"and a C++ compiler; 8 CPU-minutes), or `cmake -B build "
        f"<llama.cpp> && cmake --build build --target {tool}`; then put it on PATH, set "
        f"{ENVS[tool]}=PATH, or pass its path"
    )


def find_tool(tool: str, explicit: str | None = None) -> str:
    """The path of llama.cpp's `tool` binary (see the module contract), or ExportError."""
    env = ENVS[tool]
    if explicit or os.environ.get(env):
        path = Path(explicit or os.environ[env]).expanduser()
        origin = "the given path" if explicit else env
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ExportError(f"llama.cpp {tool} {path} (from {origin}) is not an executable file; {how_to_get(tool)}")
        return str(path)
    found = shutil.which(tool) or (str(installed(tool)) if os.access(installed(tool), os.X_OK) else None)
    if found is None:
        raise ExportError(f"no llama.cpp {tool} (not on PATH, {env} unset, none built by setup); {how_to_get(tool)}")
    return found


def quantize(binary: str, src: Path, dest: Path, outtype: str, threads: int = 2) -> None:
    """`llama-quantize src dest TYPE threads`; dest is written atomically."""
    if outtype not in QUANTS:
        raise ExportError(f"unknown quantized GGUF outtype {outtype!r}; valid: {', '.join(QUANTS)}")
    tmp = dest.with_name(dest.name + ".part")
    proc = subprocess.run([binary, str(src), str(tmp), outtype.upper(), str(threads)], capture_output=True, text=True)
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise ExportError(f"llama.cpp {binary} failed (exit {proc.returncode}) quantizing to {outtype}:\n{tail}")
    tmp.replace(dest)
