"""Config bounds and strictness (issue 21): every bad value is a ConfigError naming
the key (or file and line) at load, before any round, never an allocation or a traceback."""
from __future__ import annotations

import pytest

from loop.config import Config, ConfigError, load_config

# (--set overrides, text the error must contain)
BAD_OVERRIDES = [
    (["sample.group_size=99999999999999999999"], "sample.group_size"),   # 17.5 GB before the OOM kill
    (["sample.group_size=true"], "sample.group_size"),                   # a bool is not 1
    (["sample.group_size='4'"], "sample.group_size"),                    # a string is not 4
    (["train.grpo.beta=.nan"], "train.grpo.beta"),                       # NaN refused
    (["train.grpo.temperature=.inf"], "train.grpo.temperature"),         # infinity refused
    (["verify.rewards=[{name: int, weight: .nan}]"], "verify.rewards.0.weight"),  # NaN reward weight
    (["sample.batch_size=1000000"], "sample.batch_size"),                # batch size has a maximum
    (["sample.max_new_tokens=100000000"], "sample.max_new_tokens"),      # token budget has a maximum
    (["sample.budget.thinking_tokens=100000000"], "sample.budget.thinking_tokens"),
    (["evaluate.n_problems=100000000"], "evaluate.n_problems"),          # counts have maxima
    (["propose.sources=[{kind: arithmetic, count: 1000000000}]"], "propose.sources.0.count"),
    (["train.grpo.num_generations=100000"], "train.grpo.num_generations"),
    (["train.sft.learning_rate=-1"], "train.sft.learning_rate"),         # a negative learning rate
    (["train.sft.max_seq_len=100000000"], "train.sft.max_seq_len"),
    (["train.lora.r=0"], "train.lora.r"),                                # rank 0
    (["train.lora.dropout=1.5"], "train.lora.dropout"),                  # dropout is a probability
    (["run.threads=0"], "run.threads"),                                  # zero threads
    (["daemon.log_backups=100000"], "daemon.log_backups"),
]

# (YAML file bytes, text the error must contain)
BAD_FILES = [
    (b"sample:\n  group_size: 4\n  group_size: 8\n", "duplicate key 'group_size'"),   # last one silently won
    (b"sample: {}\nsample:\n  group_size: 2\n", "duplicate key 'sample'"),           # duplicate section
    (b"sample:\n  group_size: 4  # caf\xe9\n", "line 2: not UTF-8"),                 # latin-1 bytes
    (b"\xff\xfe s\x00a\x00m\x00", "line 1: not UTF-8"),                              # UTF-16 with a BOM
    (b"train:\n  grpo:\n    beta: .nan\n", "train.grpo.beta"),                      # NaN in a file
    (b"sample:\n  group_size: yes\n", "sample.group_size"),                         # YAML 1.1 bool
    (b"train:\n  sft:\n    batch_size: 4.0\n", "train.sft.batch_size"),             # a float is not an int
]


@pytest.mark.parametrize("overrides,key", BAD_OVERRIDES, ids=[o[0] for o, _ in BAD_OVERRIDES])
def test_bad_override_is_a_clear_error(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert key + ":" in str(err.value)


@pytest.mark.parametrize("data,text", BAD_FILES, ids=[t for _, t in BAD_FILES])
def test_bad_file_is_a_clear_error(tmp_path, data, text):
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and text in str(err.value)


@pytest.mark.parametrize("overrides,attr,value", [
    (["sample.temperature=1"], ("sample", "temperature"), 1.0),          # an int is fine for a float
    (["sample.group_size=1024"], ("sample", "group_size"), 1024),        # the maximum itself is allowed
    (["propose.curriculum.band=[0.1, 0.9]"], ("propose", "curriculum"), None),  # a YAML list for a tuple
])
def test_valid_values_still_load(overrides, attr, value):
    cfg = load_config(None, overrides)
    got = getattr(getattr(cfg, attr[0]), attr[1])
    if value is not None:
        assert got == value and type(got) is type(value)


def test_every_bound_is_in_the_schema():
    """The maxima are stated in the schema (`loop config schema`), not only enforced."""
    props = Config.model_json_schema()["$defs"]["SampleSettings"]["properties"]
    assert props["group_size"]["maximum"] == 1024
    assert props["batch_size"]["maximum"] == 4096
