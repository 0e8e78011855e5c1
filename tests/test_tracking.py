"""`train.report_to`, `train.*extra_args` and the loop's own per-round metrics in a tracker
(loop.tracking, loop.trainers.args, loop.trainers.check_args)."""
import importlib.util
import json

import pytest

from loop.config import Config, ConfigError, load_config
from tests import storefix


# --- config load: report_to, and keys loop owns ----------------------------------------------
@pytest.mark.parametrize("override, expected", [
    (None, ["none"]),                                            # default: no tracker
    ("train.report_to=tensorboard", ["tensorboard"]),            # one name is a list of one
    ("train.report_to=[tensorboard, wandb]", ["tensorboard", "wandb"]),
    ("train.report_to=[tensorboard, tensorboard]", ["tensorboard"]),  # a repeat counts once
    ("train.report_to=[]", ["none"]),                            # an empty list is none
])
def test_report_to_values(override, expected):
    assert load_config(None, [override] if override else []).train.report_to == expected


@pytest.mark.parametrize("override, needle", [
    ("train.report_to=mlflow", "train.report_to.0: Input should be 'none', 'tensorboard' or 'wandb'"),  # unknown tracker
    ("train.report_to=[none, tensorboard]", "'none' cannot be combined"),                            # none with one
    ("train.extra_args={max_steps: 5}", "train.extra_args.max_steps: set by loop, not passed through; "
     "use train.sft.max_steps / train.grpo.max_steps"),                                             # both methods' field
    ("train.sft.extra_args={learning_rate: 0.1}", "use train.sft.learning_rate"),                    # the method's own
    ("train.sft.extra_args={gradient_accumulation_steps: 2}", "use train.sft.grad_accum"),           # renamed field
    ("train.grpo.extra_args={num_generations: 8}", "use train.grpo.num_generations"),
    ("train.grpo.extra_args={use_vllm: true}", "use train.grpo.generation.engine"),
    ("train.extra_args={report_to: [wandb]}", "use train.report_to"),
    ("train.extra_args={seed: 3}", "use run.seed"),
    ("train.extra_args={output_dir: /tmp/x}", "train.extra_args.output_dir: set by loop"),
    ("train.extra_args.weight_decay=2026-01-01", "plain YAML scalars"),                              # a date: not JSON
])
def test_bad_tracking_config_names_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert needle in str(e.value)


@pytest.mark.parametrize("override, scope, expected", [
    ("train.extra_args={weight_decay: 0.01}", "extra_args", {"weight_decay": 0.01}),      # a TrainingArguments field
    ("train.extra_args.warmup_steps=0.1", "extra_args", {"warmup_steps": 0.1}),           # dotted --set builds the map
    ("train.grpo.extra_args={gradient_accumulation_steps: 2}", "grpo", {"gradient_accumulation_steps": 2}),  # loop
    # sets it for SFT only, so GRPO jobs take it
    ("train.sft.extra_args={lr_scheduler_type: cosine}", "sft", {"lr_scheduler_type": "cosine"}),  # a loop default
])
def test_good_extra_args_load(override, scope, expected):
    t = load_config(None, [override]).train
    assert (t.extra_args if scope == "extra_args" else getattr(t, scope).extra_args) == expected


def test_owned_covers_every_argument_loop_builds():
    """Each SFTConfig/GRPOConfig argument loop sets is owned (refused, naming a field) or a default."""
    from loop.trainers import args
    from loop.trainers.trl import grpo_args, sft_args
    job = _job({}, {})
    built = {"sft": sft_args(job, cuda=False), "grpo": grpo_args(job, cuda=False, generation={"use_vllm": True,
             "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3, "vllm_max_model_length": 640,
             "vllm_enable_sleep_mode": False})}
    for method, kw in built.items():
        assert set(kw) - set(args.OWNED[method]) - args.DEFAULTS == set(), method
        assert not set(args.OWNED[method]) & args.DEFAULTS


# --- before round 0: against TRL's config classes ----------------------------------------------
@pytest.mark.parametrize("override, needle", [
    (None, None),                                                                     # nothing to check
    ("train.extra_args={lr_scheduler_type: cosine, warmup_steps: 0.1, weight_decay: 0.01}", None),  # both take these
    ("train.sft.extra_args={dataset_text_field: text, packing: true}", None),         # SFTConfig only, SFT only
    ("train.grpo.extra_args={epsilon: 0.3, loss_type: dr_grpo}", None),               # GRPOConfig only
    ("train.extra_args={warmup_ratio: 0.1}",                                          # gone in transformers 5
     "train.extra_args.warmup_ratio: not an argument of TRL's SFTConfig; did you mean warmup_steps?"),
    ("train.sft.extra_args={weight_decy: 0.1}", "did you mean weight_decay"),         # a typo: the close name
    ("train.extra_args={epsilon: 0.3}",                                               # GRPO-only key for both
     "train.extra_args.epsilon: not an argument of TRL's SFTConfig"),
    ("train.grpo.extra_args={packing: true}", "train.grpo.extra_args.packing: not an argument of TRL's GRPOConfig"),
    ("train.extra_args={weight_decay: abc}", "train.extra_args.weight_decay: expected float"),  # wrong type
    ("train.grpo.extra_args={epsilon: true}", "expected float"),                      # a bool is no number
    ("train.sft.extra_args={packing: 1}", "expected bool"),
    ("train.extra_args={lr_scheduler_type: cosin}", "TRL's SFTConfig refused"),       # the class's own check
])
def test_extra_args_checked_against_trl(override, needle):
    from loop.trainers.check_args import check_extra_args
    cfg = load_config(None, [override] if override else [])
    if needle is None:
        check_extra_args(cfg)
        return
    with pytest.raises(ConfigError) as e:
        check_extra_args(cfg)
    assert needle in str(e.value)


def test_start_refuses_bad_extra_args_before_anything_is_written(tmp_path):
    from typer.testing import CliRunner

    import cli
    from tests.conftest import ROOT
    res = CliRunner().invoke(cli.app, ["start", "--rounds", "1", "-c", str(ROOT / "configs" / "tiny.yaml"),
                                       "--set", f"run.dir={tmp_path / 'run'}", "--set", "train.extra_args={warmup_ratio: 0.1}"])
    assert res.exit_code == 2 and "did you mean warmup_steps" in res.output
    assert not (tmp_path / "run" / "loop.duckdb").exists()


# --- the job's trainer arguments ---------------------------------------------------------------
def _job(extra, method_extra, report_to=("none",), tracker_dir=None):
    cfg = Config()
    return {"tmp": "/tmp/job", "seed": 7, "gradient_checkpointing": "auto", "report_to": list(report_to),
            "tracker_dir": tracker_dir, "extra_args": extra,
            "sft": {**cfg.train.sft.model_dump(mode="json"), "extra_args": method_extra},
            "grpo": {**cfg.train.grpo.model_dump(mode="json"), "extra_args": method_extra},
            "rewards": [r.model_dump(mode="json") for r in cfg.verify.rewards]}


@pytest.mark.parametrize("extra, method_extra, report_to, expected", [
    ({}, {}, ["none"], {"report_to": [], "lr_scheduler_type": "constant", "warmup_steps": 0}),  # loop's defaults
    ({}, {}, ["tensorboard"], {"report_to": ["tensorboard"], "run_name": "round-002-sft"}),  # the tracker, named
    ({"lr_scheduler_type": "cosine", "warmup_steps": 0.1}, {}, ["none"],
     {"lr_scheduler_type": "cosine", "warmup_steps": 0.1}),                          # extra_args override defaults
    ({"weight_decay": 0.1}, {"weight_decay": 0.2}, ["none"], {"weight_decay": 0.2}),  # the method's own wins
])
def test_sft_and_grpo_args_carry_report_to_and_extra_args(tmp_path, extra, method_extra, report_to, expected):
    from trl import GRPOConfig, SFTConfig

    from loop.trainers.trl import grpo_args, sft_args
    job = _job(extra, method_extra, report_to, str(tmp_path / "tracker" / "round-002-sft"))
    job["tmp"] = str(tmp_path)
    for build, cls in ((sft_args, SFTConfig), (grpo_args, GRPOConfig)):
        kw = build(job, cuda=False)
        assert {k: kw[k] for k in expected} == expected
        built = cls(**kw)  # TRL takes them as they are
        assert {k: getattr(built, k) for k in expected} == expected


@pytest.mark.parametrize("report_to, environ, expected", [
    (["none"], {}, {}),                                                               # no tracker: nothing set
    (["tensorboard"], {}, {"TENSORBOARD_LOGGING_DIR": "D"}),                          # TRL's tensorboard dir
    (["wandb"], {}, {"WANDB_DIR": "D", "WANDB_MODE": "offline", "WANDB_PROJECT": "loop"}),  # offline by default
    (["wandb"], {"WANDB_MODE": "online", "WANDB_PROJECT": "mine"},
     {"WANDB_DIR": "D", "WANDB_MODE": "online", "WANDB_PROJECT": "mine"}),            # the user's choice kept
])
def test_trainer_env(tmp_path, monkeypatch, report_to, environ, expected):
    from loop import tracking
    for k in ("WANDB_MODE", "WANDB_PROJECT"):
        monkeypatch.delenv(k, raising=False)
    for k, v in environ.items():
        monkeypatch.setenv(k, v)
    d = str(tmp_path / "tracker" / "round-001-sft")
    env = tracking.trainer_env({"report_to": report_to, "tracker_dir": d})
    assert env == {k: d if v == "D" else v for k, v in expected.items()}


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_not_installed_is_a_clear_error_before_round_0(tmp_path):
    from loop import runner
    cfg = load_config(None, [f"run.dir={tmp_path}", "train.report_to=wandb", "model.name=tiny:llama"])
    with pytest.raises(ConfigError, match=r"train.report_to: wandb is not installed in .*pip install wandb"):
        runner.validate_run(cfg)


# --- the loop's metrics -------------------------------------------------------------------------
def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture
def st(tmp_path):
    """storefix's known store, read-only."""
    from store.db import Store
    path = tmp_path / "s.duckdb"
    storefix.populate(path)
    return Store(path, read_only=True, hold=False)


def test_round_tracker_writes_store_numbers_once(tmp_path, st):
    """storefix's run-b: round 0 baseline 1/4, round 1 2/4 held-out with 7 of 12 samples verified."""
    from loop import tracking
    t = tracking.RoundTracker(["tensorboard"], tmp_path / "run")
    assert t.sync(st, "run-b", [0, 1]) == [0, 1]
    assert t.sync(st, "run-b", [0, 1]) == []  # written already
    t.close()
    again = tracking.RoundTracker(["tensorboard"], tmp_path / "run")  # a resumed run
    assert again.sync(st, "run-b", [0, 1, 2]) == [2]  # only what is new
    again.close()
    log = tmp_path / "run" / "tracker" / "loop" / "run-b"
    s = _scalars(log)
    assert s["loop/heldout_accuracy"] == [(0, 0.25), (1, 0.5), (2, 0.75)]
    assert s["loop/pass_rate"] == [(1, pytest.approx(7 / 12)), (2, pytest.approx(2 / 8))]
    assert s["loop/train_examples"] == [(1, 3.0)]
    assert json.loads((log / "logged.json").read_text()) == [0, 1, 2]


def test_one_tracker_follows_the_run_it_is_given(tmp_path, st):
    """A daemon's tracker across jobs: a new run (`--new-run`) gets its own folder, not the last one's."""
    from loop import tracking
    t = tracking.RoundTracker(["tensorboard"], tmp_path / "run")
    assert t.sync(st, "run-b", [0, 1]) == [0, 1]
    assert t.sync(st, "run-a", [1]) == [1]  # round 1 of run-a: not run-b's round 1
    t.close()
    a = _scalars(tmp_path / "run" / "tracker" / "loop" / "run-a")
    assert a["loop/pass_rate"] == [(1, 1.0)] and a["loop/samples"] == [(1, 1.0)]  # run-a: 1 sample, verified
    assert "loop/heldout_accuracy" not in a  # run-a has no evaluation


def test_a_daemon_writes_all_its_rounds_through_one_writer(tmp_path):
    """Scheduled jobs, one round each: one events file (one wandb run) for the daemon, every round in it."""
    from loop.config import load_config
    from loop.daemon import serve
    from tests.conftest import ROOT
    cfg = load_config(ROOT / "configs" / "tiny.yaml", [f"run.dir={tmp_path / 'run'}", "train.report_to=tensorboard",
                                                       "train.sft.every=0"])
    final = serve(cfg, 2, every="0.1s")
    assert final["state"] == "finished", final
    (loop_dir,) = (tmp_path / "run" / "tracker" / "loop").iterdir()
    assert len(list(loop_dir.glob("events.out.tfevents.*"))) == 1
    assert [step for step, _ in _scalars(loop_dir)["loop/heldout_accuracy"]] == [0, 1, 2]


def test_no_tracker_writes_nothing(tmp_path, st):
    from loop import tracking
    t = tracking.RoundTracker(["none"], tmp_path / "run")
    assert t.sync(st, "run-b", [0, 1]) == []
    assert not (tmp_path / "run" / "tracker").exists()


# --- a real loop ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_one_round_with_tensorboard_logs_trainer_and_loop_scalars(tmp_path):
    """A real tiny round (GRPO trains: the band lets a model that solves nothing in) with
    report_to tensorboard and a linear schedule passed through: the trainer's events hold the
    decaying learning rate, the loop's events hold the store's numbers for rounds 0 and 1."""
    from typer.testing import CliRunner

    import cli
    from store import queries
    from store.db import Store
    from tests.conftest import ROOT
    run = tmp_path / "run"
    sets = [f"run.dir={run}", "train.report_to=tensorboard", "train.grpo.every=1", "train.grpo.max_steps=3",
            "train.grpo.band=[-0.1, 1.1]", "train.grpo.extra_args={lr_scheduler_type: linear}",
            "train.grpo.learning_rate=0.01"]
    res = CliRunner().invoke(cli.app, ["start", "--rounds", "1", "-c", str(ROOT / "configs" / "tiny.yaml"),
                                       *[x for s in sets for x in ("--set", s)]])
    assert res.exit_code == 0, res.output
    trainer = _scalars(run / "tracker" / "round-001-grpo")
    lrs = [v for _, v in trainer["train/learning_rate"]]
    assert [s for s, _ in trainer["train/learning_rate"]] == [1, 2, 3]
    assert lrs == pytest.approx([0.01, 0.01 * 2 / 3, 0.01 / 3], rel=1e-6)  # each step's own rate: linear to 0
    # over 3 steps (loop's default is constant: 0.01 three times)
    assert "train/loss" in trainer and "train/reward" in trainer
    with Store(run / "loop.duckdb", read_only=True) as st:
        run_id = queries.latest_run(st)
        rows = {r["round"]: r for r in queries.rounds(st, run_id)}
        secs = {r: queries.stage_seconds(st, run_id, r) for r in (0, 1)}
    loop = _scalars(run / "tracker" / "loop" / run_id)
    for key, tag in [("heldout_accuracy", "loop/heldout_accuracy"), ("mean_reward", "loop/mean_reward"),
                     ("verified_frac", "loop/pass_rate"), ("samples", "loop/samples")]:
        want = [(r, pytest.approx(rows[r][key], rel=1e-6)) for r in (0, 1) if rows[r][key] is not None]
        assert loop[tag] == want, tag
    assert [s for s, _ in loop["loop/mean_reward"]] == [1]  # round 0 samples nothing
    assert set(secs[1]) == {"propose", "sample", "verify", "train", "evaluate"}
    for stage, s in secs[1].items():
        assert loop[f"seconds/{stage}"][-1] == (1, pytest.approx(s, rel=1e-6))
    assert loop["seconds/train"][-1][1] > 1.0  # a real GRPO job ran in it


@pytest.mark.slow
def test_loop_sft_logs_to_tensorboard(tmp_path):
    """`loop sft` (the instruct job) follows train.report_to too: its TRL losses, one per step."""
    from tests.conftest import ROOT
    from tests.test_instruct import _alpaca_file, _sft
    res = _sft(tmp_path, ROOT / "configs" / "tiny.yaml", _alpaca_file(tmp_path), "--set", "train.report_to=tensorboard")
    assert res.exit_code == 0, res.output
    (logs,) = (tmp_path / "run" / "tracker").glob("sft-*")
    s = _scalars(logs)
    assert [step for step, _ in s["train/loss"]] == [1, 2]  # instruct.max_steps=2, logging every step
    assert all(v > 0 for _, v in s["train/loss"])
