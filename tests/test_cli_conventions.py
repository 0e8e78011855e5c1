"""CLI conventions: flags as flags, choices listed, inspect's target options before or after
the subcommand, --version, --run-dir, did-you-mean for unknown keys, --set into list items."""
import pytest
from typer.testing import CliRunner

import cli
from loop import __version__
from loop.config import ConfigError, load_config
from tests.conftest import ROOT

runner = CliRunner()


def _help(*cmd):
    res = runner.invoke(cli.app, [*cmd, "--help"])
    assert res.exit_code == 0
    return res.output


@pytest.mark.parametrize("cmd, shown, not_shown", [
    (["inspect", "samples"], "--verified  ", "--verified <bool>"),          # a flag shows as a flag
    (["inspect", "export"], "<jsonl|parquet|hf|trl-sft|trl-grpo>", "--format <str>"),        # choices listed
    (["export", "model"], "<lora|merged16|merged4|gguf|ollama>", "--format <str>"),
    (["export", "model"], "<f16|bf16|q8_0|f32|q4_k_m|q5_k_m|q6_k|q4_0>", "--outtype <str>"),
    (["status"], "--run-dir", "<bool>"),
    (["stop"], "--run-dir", "<bool>"),
    (["inspect", "summary"], "--store", "<bool>"),                          # target options after the subcommand
    (["eval"], "--budgets", "--json <bool>"),                               # loop eval: the sweep's flags
])
def test_help_shows(cmd, shown, not_shown):
    out = _help(*cmd)
    assert shown in out and not_shown not in out


def test_version():
    res = runner.invoke(cli.app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"loop {__version__}"


def test_bad_choice_names_the_valid_ones(tmp_path):
    res = runner.invoke(cli.app, ["export", "model", "--format", "onnx", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "lora" in res.output and "gguf" in res.output


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    run = tmp_path_factory.mktemp("conv") / "run"
    res = runner.invoke(cli.app, ["start", "--rounds", "1", "-c", str(ROOT / "configs" / "tiny.yaml"),
                                  "--set", f"run.dir={run}"])
    assert res.exit_code == 0, res.output
    return run / "loop.duckdb"


@pytest.mark.parametrize("args", [
    ["inspect", "--store", "{s}", "--json", "summary"],        # before the subcommand
    ["inspect", "summary", "--store", "{s}", "--json"],        # after it
    ["inspect", "--json", "summary", "--store", "{s}"],        # mixed
    ["inspect", "rounds", "--set", "run.dir={d}", "--json"],   # --set after
    ["inspect", "-c", "{cfg}", "summary", "--set", "run.dir={d}", "--json"],   # -c before, --set after
])
def test_target_options_before_or_after(tiny_store, args):
    import json
    fill = {"s": str(tiny_store), "d": str(tiny_store.parent), "cfg": str(ROOT / "configs" / "tiny.yaml")}
    res = runner.invoke(cli.app, [a.format(**fill) for a in args])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["run_id"].startswith("run-")


def test_run_after_the_subcommand_is_used(tiny_store):
    res = runner.invoke(cli.app, ["inspect", "summary", "--store", str(tiny_store), "--run", "nope"])
    assert res.exit_code == 2 and "no run 'nope'" in res.output


def test_status_run_dir(tiny_store):
    res = runner.invoke(cli.app, ["status", "--run-dir", str(tiny_store.parent), "--json"])
    assert res.exit_code == 0 and f'"run_dir": "{tiny_store.parent}"' in res.output


@pytest.mark.parametrize("sets, needle", [
    (["sample.group_sise=3"], "did you mean `sample.group_size`?"),                  # a typo in a leaf
    (["sampel.group_size=3"], "did you mean `sample`?"),                             # a typo in a section
    (["propose.sources.0.cout=3"], "did you mean `propose.sources.0.count`?"),       # inside a list item
    (["sample.zzzz=3"], "sample.zzzz: unknown key\n"),                               # nothing close: no guess
    (["propose.sources.3.count=2"], "propose.sources has 1 item(s)"),                # index out of range
])
def test_config_errors(sets, needle):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs" / "tiny.yaml", sets)
    assert needle in str(e.value) + "\n"


@pytest.mark.parametrize("cfg, sets, expected", [
    ("tiny.yaml", ["propose.sources.0.count=2"], [2]),                     # a list from the YAML
    (None, ["propose.sources.0.count=3"], [3]),                            # a list from the defaults
    ("tiny.yaml", ["verify.rewards.4.params.timeout_s=1"], None),         # nested dict in a default list
])
def test_set_into_list_items(cfg, sets, expected):
    c = load_config(ROOT / "configs" / cfg if cfg else None, sets)
    if expected is not None:
        assert [s.count for s in c.propose.sources] == expected
    else:
        assert c.verify.rewards[4].params == {"timeout_s": 1}
