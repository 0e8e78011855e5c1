"""`prompt.system` (the system message of every problem: sampling, training rows, evaluation) and
`model.chat_template` (a named/inline/file Jinja template replacing the tokenizer's, checked
before round 0 with the template's line in the error; a base model without a template)."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

import cli
from loop.chat_templates import CHATML, check_template, has_template, template_text, templated_folder
from loop.models import ModelError, model_hash, resolve_model
from loop.prompts import SYSTEM_PROMPT, messages, prompt_version
from store.db import Store
from tests.conftest import ROOT

runner = CliRunner()
TINY = str(ROOT / "configs" / "tiny.yaml")
MARKED = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}\n{% endfor %}" \
         "{% if add_generation_prompt %}[assistant]{% endif %}"


@pytest.mark.parametrize("system, roles, first", [
    (None, ["system", "user"], SYSTEM_PROMPT),       # default: the answer-format instruction
    ("Be terse.", ["system", "user"], "Be terse."),  # prompt.system replaces it
    ("", ["user"], "q?"),                            # empty: no system message at all
])
def test_messages_system_table(system, roles, first):
    got = messages("q?", system)
    assert [m["role"] for m in got] == roles and got[0]["content"] == first


def test_prompt_version_tags_a_system_prompt():
    assert prompt_version(None) == "reasoning-answer-v1"
    assert prompt_version("a") != prompt_version("b") and prompt_version("a").startswith("reasoning-answer-v1+system:")


# --- templates: where they come from, and their check ----------------------------------------
def test_template_text_named_inline_file(tmp_path):
    f = tmp_path / "t.jinja"
    f.write_text(MARKED)
    assert template_text("chatml") == (CHATML, "model.chat_template 'chatml'")  # by name
    assert template_text(MARKED) == (MARKED, "model.chat_template (inline)")   # a Jinja string
    assert template_text(str(f)) == (MARKED, str(f))                            # a file
    with pytest.raises(ModelError, match="not a named template \\(valid: chatml\\).*no such file"):
        template_text(str(tmp_path / "absent.jinja"))


@pytest.mark.parametrize("template, needle", [
    ("{% for m in messages %}\n{{ m['content'] }\n{% endfor %}", "t.jinja:2: chat template syntax error"),  # brace
    ("{% for m in messages %}\n{% if m.role == 'system' %}\n{{ raise_exception('no system role') }}"
     "{% endif %}{{ m.content }}{% endfor %}", "t.jinja:3: chat template fails on a test conversation: no system"),
    ("line one\n{{ messages[0].content.nope() }}", "t.jinja:2: chat template fails"),            # a runtime error
    ("{% for m in messages %}{{ m.role }}{% endfor %}", "drops the user's message"),              # ignores content
])
def test_bad_template_names_file_and_line(tmp_path, template, needle):
    f = tmp_path / "t.jinja"
    f.write_text(template)
    with pytest.raises(ModelError) as e:
        check_template(*template_text(str(f)))
    assert needle in str(e.value) and str(f) in str(e.value), str(e.value)


def test_templated_folder_replaces_the_template_keeps_the_weights(tmp_path):
    from transformers import AutoTokenizer
    base = resolve_model("tiny:llama")
    folder = templated_folder(base, MARKED, str(tmp_path / "cache"))
    tok = AutoTokenizer.from_pretrained(folder)
    text = tok.apply_chat_template(messages("What is 2+2?", "S."), tokenize=False, add_generation_prompt=True)
    assert text == "[system]S.\n[user]What is 2+2?\n[assistant]"
    assert model_hash(folder) == model_hash(base)  # links to the same weights: the same model version
    assert templated_folder(base, MARKED, str(tmp_path / "cache")) == folder  # cached
    assert templated_folder(base, None) == base  # no template configured: the folder as it is


def _bare_model(tmp_path):
    """A copy of the tiny model with its chat template removed (a base model)."""
    bare = tmp_path / "bare"
    shutil.copytree(resolve_model("tiny:llama"), bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    conf = json.loads((bare / "tokenizer_config.json").read_text())
    conf.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(conf))
    assert not has_template(bare)
    return bare


def _start(tmp_path, *sets, rounds="0"):
    args = ["start", "--rounds", rounds, "-c", TINY, "--set", f"run.dir={tmp_path / 'run'}"]
    for s in sets:
        args += ["--set", s]
    return runner.invoke(cli.app, args)


def test_base_model_without_template_refused_then_runs_with_one(tmp_path):
    bare = _bare_model(tmp_path)
    res = _start(tmp_path, f"model.name={bare}")
    assert res.exit_code == 2 and "has no chat template" in res.output and "model.chat_template" in res.output
    assert not (tmp_path / "run" / "loop.duckdb").exists()  # refused before anything is stored
    res = _start(tmp_path, f"model.name={bare}", "model.chat_template=chatml")
    assert res.exit_code == 0, res.output


def test_bad_template_file_refused_before_round_0(tmp_path):
    f = tmp_path / "bad.jinja"
    f.write_text("{% for m in messages %}\n{{ m.content }\n{% endfor %}")
    res = _start(tmp_path, f"model.chat_template={f}")
    assert res.exit_code == 2 and f"{f}:2: chat template syntax error" in res.output, res.output
    assert not (tmp_path / "run" / "loop.duckdb").exists()


# --- prompt.system, the same in sampling, training rows and evaluation -------------------------
def test_system_prompt_in_samples_training_rows_and_evaluation(tmp_path, monkeypatch):
    from loop.samplers.hf import HFSampler
    seen: list[list[dict]] = []
    real = HFSampler.generate

    def recording(self, prompts, params, progress=None):  # the real sampler, its prompts kept
        seen.extend(prompts)
        return real(self, prompts, params, progress)

    monkeypatch.setattr(HFSampler, "generate", recording)
    system = "Answer with a number only."
    (tmp_path / "marked.jinja").write_text(MARKED)
    res = _start(tmp_path, f"prompt.system={system}", f"model.chat_template={tmp_path / 'marked.jinja'}", rounds="1")
    assert res.exit_code == 0, res.output
    assert seen and all(p[0] == {"role": "system", "content": system} for p in seen)  # sample + evaluate
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        rows = st.query("SELECT s.prompt_version, s.prompt_tokens, p.question FROM samples s JOIN problems p "
                        "USING (problem_id)")
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(resolve_model("tiny:llama"))
    for r in rows:  # the prompt sampled is the configured system + question, rendered by the configured template
        text = f"[system]{system}\n[user]{r['question']}\n[assistant]"
        assert r["prompt_version"] == prompt_version(system)
        assert r["prompt_tokens"] == len(tok(text, add_special_tokens=False)["input_ids"])


def test_system_prompt_in_training_rows():
    from loop.trainers.chains import select_chains
    rows = [{"problem_id": "p1", "question": "What is 2+2?", "answer": "4", "strict": True, "extracted": "4",
             "completion": "<reasoning>\n2+2\n</reasoning>\n<answer>\n4\n</answer>\n"}]
    (row,) = select_chains(rows, None, 0, "Answer with a number only.")
    assert row["prompt"] == messages("What is 2+2?", "Answer with a number only.")
    (default,) = select_chains(rows)
    assert default["prompt"][0]["content"] == SYSTEM_PROMPT
