"""Vision rows without a model: `<image>` placeholders split in place, and a round's verified chains
turned into vision SFT rows carrying their problem's image."""
from __future__ import annotations

import json

import pytest

from loop.config import load_config
from loop.problems.vision import split_placeholders
from loop.trainers.vision_rows import round_vision_settings, vision_examples
from tests.conftest import ROOT

IMG, TXT = {"type": "image"}, (lambda t: {"type": "text", "text": t})


@pytest.mark.parametrize("text, expected", [
    ("<image>Who?", [IMG, TXT("Who?")]),                              # image first
    ("What now?<image>", [TXT("What now?"), IMG]),                    # image last
    ("A<image>B<image>", [TXT("A"), IMG, TXT("B"), IMG]),             # two images, text between
    ("<image><image>", [IMG, IMG]),                                   # images only, no empty text blocks
    ("no image here", [TXT("no image here")]),                        # a text turn stays one block
])
def test_split_placeholders(text, expected):
    assert split_placeholders(text) == expected


def test_chains_become_vision_rows_with_their_images():
    chain = {"problem_id": "p1", "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Read."}],
             "completion": [{"role": "assistant", "content": "odometer: 1 km"}]}
    text_only = {**chain, "problem_id": "p2"}  # e.g. a train.sft.mix row: no image in its meta
    metas = {"p1": json.dumps({"image": "/imgs/ab.png", "image_sha256": "ab" * 8}), "p2": None}
    with_image, without = vision_examples([chain, text_only], metas)
    assert json.loads(with_image["messages"]) == [
        {"role": "system", "content": [TXT("S")]},                    # every turn as blocks: one column type
        {"role": "user", "content": [IMG, TXT("Read.")]},             # the image before the question
        {"role": "assistant", "content": [TXT("odometer: 1 km")]},
    ]
    assert (with_image["images"], with_image["image_sha256"]) == (["/imgs/ab.png"], ["ab" * 8])
    assert (without["images"], json.loads(without["messages"])[1]["content"]) == ([], [TXT("Read.")])


def test_round_vision_settings_come_from_train_sft():
    cfg = load_config(ROOT / "configs" / "dashboard.yaml", ["train.sft.max_steps=7", "instruct.vision.finetune_mlp_modules=false"])
    s = round_vision_settings(cfg)
    assert (s["max_steps"], s["batch_size"], s["max_seq_len"], s["lr_scheduler"]) == (7, 2, 1024, "constant")
    assert s["vision"]["finetune_mlp_modules"] is False and "sources" not in s
