"""Vision sources (the course's Excel sheet, messages + images JSON), their bad-input errors before
training, the LoRA layer switches and Unsloth arguments, and one CPU vision SFT job on the tiny
Qwen2.5-VL end to end (train, LoRA saved, loaded back with PEFT, generate)."""
from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

import cli
from loop.config import SourceSettings
from loop.problems import ProposeError
from loop.problems.readers.images import fit, open_image
from loop.problems.seeds import source_conversations
from loop.trainers.vision import lora_targets, unsloth_load_args, unsloth_peft_args, unsloth_sft_args
from store.db import Store
from tests.conftest import ROOT

DEMO = ROOT.parent / "shared" / "data" / "vision" / "mllm_demo.json"
runner = CliRunner()


def _image(path, size=(96, 64), color=(200, 40, 40)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _sheet(tmp_path, rows, header=("id", "prompt", "image", "response")):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(list(header))
    for r in rows:
        ws.append(list(r))
    wb.save(tmp_path / "sheet.xlsx")
    return tmp_path / "sheet.xlsx"


def _src(path, fmt="vision", **kw):
    return SourceSettings(kind="file", path=str(path), format=fmt, **kw)


def test_excel_sheet_rows_become_image_conversations(tmp_path):
    img = _image(tmp_path / "images" / "1-odometer.png", size=(200, 100))
    path = _sheet(tmp_path, [(1, "What is the mileage?", "images/1-odometer.png", "12345 km")])
    (conv,) = source_conversations(_src(path, image_max_side=50))
    assert conv["messages"] == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is the mileage?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "12345 km"}]},
    ]
    (info,) = conv["meta"]["images"]
    assert conv["images"] == [str(img.resolve())] and info["path"] == str(img.resolve())  # relative to the sheet
    assert info["sha256"] == hashlib.sha256(img.read_bytes()).hexdigest()[:16]
    assert (info["size"], info["resized"], info["format"]) == ([200, 100], [50, 25], "PNG")
    assert conv["meta"]["id"] == "1" and conv["meta"]["line"] == 2 and conv["meta"]["file"] == str(path)
    assert open_image(img, 50).size == (50, 25) and open_image(img, 50).mode == "RGB"


@pytest.mark.parametrize("size, max_side, expected", [
    ((200, 100), 50, (50, 25)),     # landscape: width is the longer side
    ((100, 300), 150, (50, 150)),   # portrait: height is the longer side
    ((40, 30), 512, (40, 30)),      # smaller than the limit: never enlarged
    ((1000, 1), 10, (10, 1)),       # a sliver keeps at least one pixel
])
def test_fit_keeps_aspect_under_the_limit(size, max_side, expected):
    assert fit(size, max_side) == expected


@pytest.mark.skipif(not DEMO.exists(), reason="shared mllm_demo data absent")
def test_messages_with_image_placeholders_on_the_real_photos():
    convs = source_conversations(_src(DEMO, "vision_messages"))
    raw = json.loads(DEMO.read_text())
    assert len(convs) == len(raw)
    for conv, row in zip(convs, raw):
        blocks = [b for t in conv["messages"] for b in t["content"]]
        assert sum(b["type"] == "image" for b in blocks) == len(row["images"]) == len(conv["images"])
        for ref, info in zip(row["images"], conv["meta"]["images"]):
            real = (DEMO.parent / ref).read_bytes()
            assert info["sha256"] == hashlib.sha256(real).hexdigest()[:16] and info["format"] == "JPEG"
    first = convs[0]["messages"]
    # "<image>Who are they?" -> image then text; "What are they doing?<image>" -> text then image
    assert first[0]["content"] == [{"type": "image"}, {"type": "text", "text": "Who are they?"}]
    assert first[2]["content"] == [{"type": "text", "text": "What are they doing?"}, {"type": "image"}]
    assert {i["path"] for c in convs for i in c["meta"]["images"]} == {
        str((DEMO.parent / "mllm_demo_data" / f"{k}.jpg").resolve()) for k in (1, 2, 3)}


def _bad(tmp_path, case):
    _image(tmp_path / "ok.png")
    (tmp_path / "notes.jpg").write_text("not an image at all")
    good = _image(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:40])  # a truncated PNG
    (tmp_path / "folder.png").mkdir()
    rows = {
        "missing": [(1, "Read it.", "ok.png", "1"), (2, "Read it.", "gone.png", "2")],
        "non_image": [(1, "Read it.", "notes.jpg", "1")],
        "truncated": [(1, "Read it.", "cut.png", "1")],
        "folder": [(1, "Read it.", "folder.png", "1")],
        "no_prompt": [(1, "Read it.", "ok.png", "1"), (2, None, "ok.png", "2")],
        "no_image_cell": [(1, "Read it.", None, "1")],
    }[case]
    return _sheet(tmp_path, rows)


@pytest.mark.parametrize("case, expected", [
    ("missing", "sheet.xlsx:3: image 'gone.png' not found"),                  # second data row, sheet row 3
    ("non_image", "sheet.xlsx:2: image 'notes.jpg' ("),                       # text bytes named .jpg
    ("truncated", "sheet.xlsx:2: image 'cut.png' ("),                         # PNG cut after 40 bytes
    ("folder", "sheet.xlsx:2: image 'folder.png' is not a regular file"),     # a directory, not a file
    ("no_prompt", "sheet.xlsx:3: field 'prompt' missing or empty"),           # the row, and the field
    ("no_image_cell", "sheet.xlsx:2: image path missing or empty"),           # empty image cell
])
def test_bad_vision_rows_name_the_row_and_path(tmp_path, case, expected):
    with pytest.raises(ProposeError) as e:
        source_conversations(_src(_bad(tmp_path, case)))
    assert expected in str(e.value)


@pytest.mark.parametrize("row, expected", [
    ({"messages": [{"role": "user", "content": "<image><image>Hi"}, {"role": "assistant", "content": "x"}],
      "images": ["a.png"]}, "2 <image> placeholder(s) in the messages but 1 image(s)"),    # count mismatch
    ({"messages": [{"role": "user", "content": "<image>Hi"}]}, "field 'images' missing"),   # no images list
    ({"messages": [{"role": "user", "content": "<image>Hi"}], "images": ["a.png"]},
     "must end with an assistant turn"),                                                   # nothing to train on
])
def test_bad_messages_rows(tmp_path, row, expected):
    _image(tmp_path / "a.png")
    (tmp_path / "d.json").write_text(json.dumps([row]))
    with pytest.raises(ProposeError) as e:
        source_conversations(_src(tmp_path / "d.json", "vision_messages"))
    assert "d.json:1:" in str(e.value) and expected in str(e.value)


def test_bad_image_fails_loop_sft_before_the_store(tmp_path):
    path = _bad(tmp_path, "missing")
    res = _sft(tmp_path, path)
    assert res.exit_code == 2 and "sheet.xlsx:3: image 'gone.png' not found" in res.output, res.output
    assert not (tmp_path / "run").exists()


TINY_NAMES = [  # tiny:qwen2.5-vl's Linear layers (one block / layer of each)
    "model.visual.blocks.0.attn.qkv", "model.visual.blocks.0.attn.proj", "model.visual.blocks.0.mlp.gate_proj",
    "model.visual.merger.mlp.0", "model.language_model.layers.0.self_attn.q_proj",
    "model.language_model.layers.0.self_attn.o_proj", "model.language_model.layers.0.mlp.down_proj", "lm_head",
]


@pytest.mark.parametrize("switches, expected", [
    ((1, 1, 1, 1), {"model.visual.blocks.0.attn.qkv", "model.visual.blocks.0.attn.proj",
                    "model.visual.blocks.0.mlp.gate_proj", "model.language_model.layers.0.self_attn.q_proj",
                    "model.language_model.layers.0.self_attn.o_proj", "model.language_model.layers.0.mlp.down_proj"}),
    ((0, 1, 1, 1), {"model.language_model.layers.0.self_attn.q_proj",     # language only
                    "model.language_model.layers.0.self_attn.o_proj", "model.language_model.layers.0.mlp.down_proj"}),
    ((1, 0, 1, 0), {"model.visual.blocks.0.attn.qkv", "model.visual.blocks.0.attn.proj"}),  # vision attention only
    ((1, 1, 0, 1), {"model.visual.blocks.0.mlp.gate_proj", "model.language_model.layers.0.mlp.down_proj"}),  # MLPs
])
def test_lora_targets_follow_the_course_switches(switches, expected):
    import re

    keys = ("finetune_vision_layers", "finetune_language_layers", "finetune_attention_modules", "finetune_mlp_modules")
    pattern = lora_targets(dict(zip(keys, map(bool, switches))))
    assert {n for n in TINY_NAMES if re.fullmatch(pattern, n)} == expected  # never the merger or lm_head


@pytest.mark.parametrize("quant, load_in_4bit", [("16bit", False), ("4bit", True)])  # LoRA / QLoRA
def test_unsloth_vision_arguments(tmp_path, quant, load_in_4bit):
    from loop.config import load_config

    cfg = load_config(ROOT / "configs" / "vision.yaml")
    job = {"base": "/m/qwen-vl", "seed": 3407, "tmp": str(tmp_path), "lora": {**cfg.train.lora.model_dump(), "quant": quant},
           "instruct": cfg.instruct.model_dump(mode="json")}
    assert unsloth_load_args(job) == {"model_name": "/m/qwen-vl", "load_in_4bit": load_in_4bit,
                                      "use_gradient_checkpointing": "unsloth", "max_seq_length": 2048}
    assert unsloth_peft_args(job) == {
        "finetune_vision_layers": True, "finetune_language_layers": True, "finetune_attention_modules": True,
        "finetune_mlp_modules": True, "r": 16, "lora_alpha": 16, "lora_dropout": 0.0, "bias": "none",
        "random_state": 3407, "use_rslora": False, "loftq_config": None}
    args = unsloth_sft_args(job, cuda=True)
    assert (args["remove_unused_columns"], args["dataset_kwargs"], args["dataset_text_field"]) == (
        False, {"skip_prepare_dataset": True}, "")
    assert (args["max_steps"], args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (30, 2, 4)


def _sft(tmp_path, path, *extra):
    src = json.dumps([{"kind": "file", "path": str(path), "format": "vision", "image_max_side": 64}])
    return runner.invoke(cli.app, ["sft", "-c", str(ROOT / "configs" / "vision.yaml"),
                                   "--set", "model.name=tiny:qwen2.5-vl", "--set", f"run.dir={tmp_path / 'run'}",
                                   "--set", f"instruct.sources={src}", "--set", "instruct.max_steps=2",
                                   "--set", "instruct.heldout=2", "--set", "instruct.max_new_tokens=4",
                                   "--set", "instruct.grad_accum=1", "--set", "run.threads=1", *extra])


def test_vision_sft_end_to_end_on_the_tiny_vlm(tmp_path):
    colors = [(30 * i, 100, 200 - 20 * i) for i in range(6)]
    rows = [(i, "Read the odometer.", f"images/{i}.png", f"{1000 + i} km") for i in range(6)]
    for i, c in enumerate(colors):
        _image(tmp_path / "images" / f"{i}.png", color=c)
    res = _sft(tmp_path, _sheet(tmp_path, rows))
    assert res.exit_code == 0, res.output
    with Store(tmp_path / "run" / "loop.duckdb", read_only=True) as st:
        (row,) = st.query("SELECT * FROM models")
    config, metrics = json.loads(row["config"]), json.loads(row["metrics"])
    assert config["method"] == "vision" and (config["train_rows"], config["heldout_rows"]) == (4, 2)
    assert len(config["images"]) == 6 and all(len(h) == 16 for _, h in config["images"])  # every image, hashed
    assert metrics["steps"] == 2 and metrics["heldout_loss_before"] > 0 and metrics["heldout_loss_after"] > 0
    assert [p["prompt"] for p in metrics["prompts"]] == ["<image>Read the odometer."] * 2
    adapter = tmp_path / "run" / "models" / f"sft-{row['data_hash']}"
    assert (adapter / "adapter_model.safetensors").exists()
    text = _generate_with_adapter(row["base_path"], adapter, tmp_path / "images" / "0.png")
    assert isinstance(text, str)
    out = runner.invoke(cli.app, ["export", "model", "--store", str(tmp_path / "run" / "loop.duckdb"),
                                  "--format", "merged16", "--out", str(tmp_path / "merged")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "merged" / "preprocessor_config.json").exists()


def _generate_with_adapter(base, adapter, image_path):
    """Load the base VLM, put the saved LoRA on it with PEFT, and answer one image greedily."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from loop.vlm import load_processor

    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), adapter)
    assert sum("lora_" in n for n, _ in model.named_parameters()) > 0  # the adapter is on the model
    proc = load_processor(base)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Read the odometer."}]}]
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ids = proc(text=[text], images=[open_image(image_path, 64)], return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]  # it generated new tokens after the image prompt
    return proc.tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize("sets, expected", [
    (["model.name=tiny:llama"], "the model is not a vision-language model"),        # vision data, text model
    (['instruct.prompts=["Read it."]'], "instruct.prompts are text-only"),          # text prompts have no image
])
def test_vision_sft_refuses_a_mismatch_before_training(tmp_path, sets, expected):
    _image(tmp_path / "a.png")
    rows = [(i, "Read it.", "a.png", str(i)) for i in range(4)]
    res = _sft(tmp_path, _sheet(tmp_path, rows), *[a for s in sets for a in ("--set", s)])
    assert res.exit_code == 2 and expected in res.output, res.output


def test_the_shipped_csv_copy_of_the_odometer_sheet_reads_as_the_xlsx():
    """data/vision/odometer.csv (read by bench/vision_sft.py where openpyxl is missing) is the same sheet."""
    pytest.importorskip("openpyxl")
    sheet = source_conversations(_src(ROOT / "data" / "vision" / "odometer.xlsx"))
    csv = source_conversations(_src(ROOT / "data" / "vision" / "odometer.csv"))
    assert len(sheet) == 8 and [c["messages"] for c in csv] == [c["messages"] for c in sheet]
