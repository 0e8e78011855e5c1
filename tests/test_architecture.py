"""The layout is the architecture: stages in loop/stages/, no import circles, deferred imports
only for heavy libraries."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.import_graph import cycles, deferred_imports, graph

# Libraries heavy enough to import only where they are used (start-up time of `loop --help`,
# `loop status`, a training child that never samples).
HEAVY = {"torch", "transformers", "vllm", "trl", "unsloth", "peft", "datasets", "pyarrow", "sympy",
         "mpmath", "gguf", "matplotlib", "safetensors", "tokenizers", "huggingface_hub", "numpy",
         "apscheduler", "accelerate", "bitsandbytes", "PIL", "openpyxl", "wandb",
         "rewards.sympy_bridge"}  # imports sympy: only verifier workers pay for it
# Entry points may defer project modules too: the CLI keeps `loop --help` instant.
ENTRY_POINTS = {"cli.py"}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


CYCLE_CASES = [
    ({"loop/__init__.py": "", "loop/a.py": "from loop import b\n", "loop/b.py": "x = 1\n"}, []),   # a chain
    ({"loop/__init__.py": "", "loop/a.py": "from loop.b import x\n",
      "loop/b.py": "def f():\n    from loop.a import y\n"}, [["loop.a", "loop.b"]]),      # inside a function too
    ({"loop/__init__.py": "", "loop/p/__init__.py": "from loop.p.q import x\n",
      "loop/p/q.py": "from loop.p import y\n"}, []),                                          # package and its child
    ({"store/__init__.py": "", "store/a.py": "from . import b\n", "store/b.py": "from .a import z\n",
      "rewards/__init__.py": ""}, [["store.a", "store.b"]]),                                 # relative imports
]


@pytest.mark.parametrize("files,expected", CYCLE_CASES)
def test_cycle_finder(tmp_path, files, expected):
    assert cycles(graph(_tree(tmp_path, files))) == expected


def test_no_import_cycles():
    assert cycles(graph(ROOT)) == []


def test_deferred_imports_are_heavy_libraries():
    light = [(f, line, mod) for f, line, mod in deferred_imports(ROOT)
             if f not in ENTRY_POINTS and mod not in HEAVY]
    assert light == []


def test_each_stage_is_one_module():
    from loop.stages import STAGE_NAMES, STAGES
    assert STAGE_NAMES == ["propose", "sample", "verify", "train", "evaluate"]
    for name, fn in STAGES.items():
        assert (ROOT / "loop" / "stages" / f"{name}.py").exists()
        assert fn is importlib.import_module(f"loop.stages.{name}").stage


def test_no_module_shadows_the_standard_library():
    import sys
    names = {p.stem for pkg in ("loop", "rewards", "store") for p in (ROOT / pkg).rglob("*.py")}
    names |= {p.name for pkg in ("loop", "rewards", "store") for p in (ROOT / pkg).rglob("*") if p.is_dir()}
    assert sorted(names & set(sys.stdlib_module_names) - {"__init__"}) == []
