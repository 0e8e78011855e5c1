"""Config tree: precedence, validation with named keys, every shipped config loads."""
from pathlib import Path

import pytest

from loop.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.verify.correctness in [r.name for r in cfg.verify.rewards]


def test_precedence_defaults_file_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("sample:\n  group_size: 6\n  temperature: 0.5\n")
    cfg = load_config(f, ["sample.group_size=9"])
    assert cfg.sample.group_size == 9          # override beats file
    assert cfg.sample.temperature == 0.5       # file beats default
    assert cfg.sample.top_p == Config().sample.top_p  # default kept


@pytest.mark.parametrize("text, expected", [
    ("4e-4", 4e-4),        # exponent without a dot: a string under YAML 1.1, a float here
    ("2.0e-4", 2e-4),      # YAML 1.1's own float form
    ("1E-3", 1e-3),        # capital E
    (".5e-3", 5e-4),       # leading dot
    ("+3e-4", 3e-4),       # explicit sign
])
def test_exponent_floats_in_overrides_and_files(tmp_path, text, expected):
    assert load_config(None, [f"train.sft.learning_rate={text}"]).train.sft.learning_rate == expected
    f = tmp_path / "lr.yaml"
    f.write_text(f"train:\n  sft:\n    learning_rate: {text}\n")
    assert load_config(f).train.sft.learning_rate == expected


@pytest.mark.parametrize("overrides, needle", [
    (["sample.bogus=1"], "sample.bogus: unknown key"),            # unknown nested key named
    (["nope=1"], "nope: unknown key"),                            # unknown top-level key
    (["sample.group_size=0"], "sample.group_size"),               # out of range
    (["sample.backend=tensorrt"], "sample.backend"),              # not a valid backend
    (["sample.group_size"], "expected key=value"),                # malformed override
    (["propose.sources=[{kind: jsonl}]"], "needs 'path'"),        # jsonl without a path
    (["propose.sources=[{kind: file, format: alpaca}]"], "needs 'path'"),       # file without a path
    (["propose.sources=[{kind: file, path: x.csv, reader: xls}]"], "reader"),   # unknown reader
    (["instruct.sources=[{kind: arithmetic}]"], "must be `kind: file`"),        # sft needs data files
    (["train.sft.mix=[{kind: self}]"], "must be `kind: file`"),                 # mix needs data files
    (["propose.curriculum.bands={cod: [0.1, 0.9]}"],                            # not a source kind: named, with
     "propose.curriculum.bands: Value error, 'cod' is not a source kind (did you mean 'code'?); "
     "valid: arithmetic, jsonl, file, self, dashboard, code"),                   # ... every valid kind
    (["propose.curriculum.bands={self: [0.7, 0.3]}"], "propose.curriculum.bands: Value error, self: band"),
    (["propose.curriculum.bands={self: [0.3, 1.5]}"], "self: band must satisfy 0 <= lo <= hi <= 1"),
    (["propose.curriculum.bands={self: [0.3]}"], "propose.curriculum.bands.self"),  # not a pair
    (["propose.curriculum.band=[0.9, 0.1]"], "propose.curriculum.band: Value error, band must satisfy"),
])
def test_bad_overrides_name_the_key(overrides, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert needle in str(e.value)


@pytest.mark.parametrize("bands, kind, expected", [
    ("{code: [0.1, 0.9], self: [0.3, 0.7]}", "code", (0.1, 0.9)),     # a kind's own band (a YAML list)
    ("{code: [0.1, 0.9], self: [0.3, 0.7]}", "self", (0.3, 0.7)),
    ("{code: [0.1, 0.9]}", "arithmetic", (0.2, 0.8)),                  # a kind not named: `band`
    ("{}", "self", (0.2, 0.8)),                                        # none given (the default)
    ("{jsonl: [0, 1]}", None, (0.2, 0.8)),                             # a problem of no known kind: `band`
])
def test_per_kind_bands_table(bands, kind, expected):
    cur = load_config(None, [f"propose.curriculum.bands={bands}"]).propose.curriculum
    assert cur.band_for(kind) == expected


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  max_stepz: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(f) in str(e.value) and "train.max_stepz: unknown key" in str(e.value)


def test_missing_and_invalid_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "b.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


def test_reward_params_nest_under_reward():
    cfg = load_config(None, ["verify.rewards=[{name: correctness, weight: 2, params: {timeout_s: 1}}]"])
    assert cfg.verify.rewards[0].params == {"timeout_s": 1}


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config(ROOT / "configs" / "default.yaml", ["sample.group_size=3"])
    f = tmp_path / "saved.yaml"
    f.write_text(cfg.to_yaml())
    assert load_config(f) == cfg


def test_builtin_defaults_equal_default_yaml():
    # `loop start` without --config must run the same job as configs/default.yaml
    assert load_config(ROOT / "configs" / "default.yaml") == Config()


def test_config_show_rows_name_every_leaf_with_its_description():
    from loop.config_docs import rows
    cfg = load_config(None, ["propose.sources=[{kind: arithmetic, count: 3}, {kind: arithmetic, count: 5}]"])
    table = {k: (v, d) for k, v, d in rows(cfg)}
    assert table["sample.group_size"][0] == cfg.sample.group_size          # a resolved leaf
    assert table["propose.sources.1.count"][0] == 5                        # list items by index
    assert "propose.sources" not in table and "sample" not in table        # sections are not leaves
    assert all(d for d in (d for _, d in table.values()))                   # every leaf documented
