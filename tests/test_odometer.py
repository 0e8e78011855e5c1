"""The dashboard generator draws exactly the values it answers (pixel check per field), and the
field-wise reward's table of (prediction, expected)."""
from __future__ import annotations

import pytest

from loop.problems.odometer import FIELDS, dashboard, field_text, font
from rewards import build_reward
from rewards.dashboard import fields


def _alone(d, name):
    """The field's value text drawn by itself on the dashboard's background, same font and place."""
    from PIL import Image, ImageDraw

    text, xy = d.boxes[name]
    img = Image.new("RGB", d.image.size, (18, 20, 26))
    ImageDraw.Draw(img).text(xy, text, fill=(235, 240, 245), font=font(d.font, 18))
    box = ImageDraw.Draw(img).textbbox(xy, text, font=font(d.font, 18))
    return img.crop(box), box


@pytest.mark.parametrize("seed", [1, 2, 7, 42, 1234])  # several layouts, fonts and units among them
@pytest.mark.parametrize("name", FIELDS)
def test_the_answer_is_what_was_drawn(seed, name):
    d = dashboard(seed, difficulty=0)
    text, _ = d.boxes[name]
    assert text == field_text(name, d.values[name], d.unit)  # the string drawn is the answer's value
    alone, box = _alone(d, name)
    assert alone.tobytes() == d.image.crop(box).tobytes()  # and it is what the image shows there
    assert fields(d.answer)[name] == text  # the answer line the reward reads


def test_seeded_and_varied():
    a, b = dashboard(1), dashboard(1)  # a seed is one image and one answer
    assert a.image.tobytes() == b.image.tobytes() and a.answer == b.answer
    many = [dashboard(s) for s in range(40)]
    assert {m.layout for m in many} == {"rows", "grid", "cluster"} and {m.unit for m in many} == {"km", "mi"}
    assert len({m.font for m in many}) == 3


def test_difficulty_adds_noise_and_blur():
    import numpy as np

    clean = np.asarray(dashboard(5, 0).image).astype(float)
    diffs = [np.abs(np.asarray(dashboard(5, k).image).astype(float) - clean).mean() for k in (1, 2, 3)]
    assert 0 < diffs[0] < diffs[1] < diffs[2]  # harder = further from the clean drawing
    with pytest.raises(ValueError, match="difficulty must be 0..3"):
        dashboard(5, 4)


GOLD = "odometer: 123456 km\ntrip: 45.6 km\nspeed: 88 km/h\nclock: 09:05\ntemperature: -3 C\ngear: D"


@pytest.mark.parametrize("prediction, expected", [
    (GOLD, 1.0),                                                              # all six right
    (GOLD.replace("123456", "123457"), 5 / 6),                                 # odometer exact: off by one fails
    (GOLD.replace("45.6", "45.7"), 1.0),                                       # trip within 0.1
    (GOLD.replace("45.6", "45.8"), 5 / 6),                                     # trip outside 0.1
    (GOLD.replace("88 km/h", "89 kph"), 1.0),                                  # speed within 1, unit alias
    (GOLD.replace("88 km/h", "88 mph"), 5 / 6),                                # right number, wrong unit
    (GOLD.replace("09:05", "9:05"), 1.0),                                      # clock without the leading zero
    (GOLD.replace("gear: D", "GEAR = d"), 1.0),                                # case and '=' tolerated
    ("speed: 88 km/h\nodometer: 123,456 km", 2 / 6),                           # any order, thousands comma; missing count 0
    ("The odometer shows about 123456.", None),                                # no field lines: unparsable
    ("odometer: unknown\nclock: noon", None),                                  # fields present, none readable
    ("", None),                                                                # empty completion
])
def test_field_reward_table(prediction, expected):
    reward = build_reward("dashboard_fields")
    (got,) = reward(["p"], [[{"role": "assistant", "content": prediction}]], answer=[GOLD])
    assert got == (None if expected is None else pytest.approx(expected))


def test_dashboard_source_saves_hashed_images_and_skips_held_out(tmp_path):
    import hashlib

    from loop.problems.odometer import dashboard_problems

    probs = dashboard_problems(3, [1, 4], seed=5, folder=str(tmp_path))
    for p in probs:
        data = open(p.meta["image"], "rb").read()
        assert hashlib.sha256(data).hexdigest()[:16] == p.meta["image_sha256"]  # named and stored by content
        assert p.meta["difficulty"] == p.level - 1 and p.level in (1, 4)
        assert p.answer == dashboard(p.meta["seed"], p.meta["difficulty"]).answer  # the seed redraws it
    again = dashboard_problems(3, [1, 4], seed=5, folder=str(tmp_path), exclude={probs[0].answer})
    assert [p.answer for p in again] == [p.answer for p in probs[1:]]  # a held-out reading is never proposed
