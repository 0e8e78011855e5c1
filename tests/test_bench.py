"""bench/train_gpu.py's backend specs: each row of a GPU benchmark is named by one."""
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("train_gpu", Path(__file__).parents[1] / "bench" / "train_gpu.py")
train_gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_gpu)


@pytest.mark.parametrize("spec,expected", [
    ("trl", ("trl", None, "auto", {})),  # plain backend: the config's quant and checkpointing
    ("unsloth@offload", ("unsloth", None, "offload", {})),  # checkpointing only
    ("unsloth:4bit", ("unsloth", "4bit", "auto", {})),  # QLoRA row
    ("unsloth:4bit@off+A=1+B=x=y", ("unsloth", "4bit", "off", {"A": "1", "B": "x=y"})),  # all parts; '=' in a value
])
def test_parse_backend(spec, expected):
    assert train_gpu.parse_backend(spec) == expected


def test_ratios_against_trl():
    rows = [{"method": "sft", "backend": "trl", "s_per_step": 0.3, "peak_memory_gb": 20.0},
            {"method": "sft", "backend": "unsloth:4bit", "s_per_step": 0.1, "peak_memory_gb": 5.0},
            {"method": "sft", "backend": "unsloth", "error": "boom"}]
    assert train_gpu.ratios(rows) == [{"method": "sft", "backend": "unsloth:4bit",
                                       "speedup": pytest.approx(3.0), "memory_ratio": 0.25}]


def test_pass_at_k_table_overall_and_per_kind():
    """bench/pass_at_k.py's summary: unbiased pass@k per problem, averaged overall and per kind."""
    spec = importlib.util.spec_from_file_location("pass_at_k", Path(__file__).parents[1] / "bench" / "pass_at_k.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    table = mod.table
    counts = [("add", 0), ("add", 8), ("mul", 4), ("mul", 2)]  # correct of 8 samples each
    res = table(counts, 8, [1, 8])
    assert res["pass@1"] == round((0 + 1 + 0.5 + 0.25) / 4, 3)   # c/n per problem
    assert res["pass@8"] == 0.75                                 # all but the problem never solved
    assert res["add"] == {"pass@1": 0.5, "pass@8": 0.5} and res["mul"]["pass@8"] == 1.0
