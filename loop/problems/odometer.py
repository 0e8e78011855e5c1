"""Procedural dashboard images with exact answers: the verifiable visual task.

`dashboard(seed, difficulty)` draws, with PIL, a car dashboard showing six fields: total
mileage (`odometer`), `trip`, `speed`, `clock` time, outside `temperature` and `gear`, in km
or mi, in one of `LAYOUTS` with one of the DejaVu `FONTS` (PIL's built-in font where they
are absent). Difficulty 0..3 adds pixel noise and blur (`NOISE`, `BLUR`). Everything is drawn
from `random.Random(seed)`, so a seed is one image and one answer.

`dashboard_problems(count, levels, seed, folder)` is the `kind: dashboard` source: level L is
difficulty L-1; each image is saved as PNG under `folder`, named by its content hash, and the
problem's meta holds its path and sha256 (so the store keeps where the pixels are).

The answer is `answer_text(values)`: one `field: value` line per field, the format the
`dashboard_fields` reward (rewards/dashboard.py) parses. `Dashboard.boxes` records, per field,
the exact string drawn and where, so a test can redraw each string alone and compare pixels.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loop.problems import Problem

FIELDS = ("odometer", "trip", "speed", "clock", "temperature", "gear")
GEARS = ("P", "R", "N", "D", "1", "2", "3", "4", "5", "6")
UNITS = ("km", "mi")
LAYOUTS = ("rows", "grid", "cluster")
FONTS = ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSerif.ttf")
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)
NOISE = (0, 8, 20, 40)  # std of Gaussian pixel noise per difficulty
BLUR = (0.0, 0.0, 0.8, 1.5)  # Gaussian blur radius per difficulty
SIZE = (320, 200)
PROMPT = (
    "Read this vehicle dashboard. Answer with one line per field: odometer, trip, speed, clock, "
    "temperature, gear (e.g. `odometer: 12345 km`)."
)


@dataclass
class Dashboard:
    values: dict[str, Any]  # field -> value (odometer int, trip float, speed int, clock str, temperature int, gear)
    unit: str
    layout: str
    font: str
    difficulty: int
    boxes: dict[str, tuple[str, tuple[int, int]]] = field(default_factory=dict)  # field -> (text drawn, xy)
    image: Any = None  # PIL image

    @property
    def answer(self) -> str:
        return answer_text(self.values, self.unit)


def draw_values(r: random.Random) -> tuple[dict[str, Any], str]:
    values = {
        "odometer": r.randrange(0, 1_000_000),
        "trip": round(r.randrange(0, 10_000) / 10, 1),
        "speed": r.randrange(0, 241),
        "clock": f"{r.randrange(24):02d}:{r.randrange(60):02d}",
        "temperature": r.randrange(-30, 46),
        "gear": r.choice(GEARS),
    }
    return values, r.choice(UNITS)


def field_text(name: str, value: Any, unit: str) -> str:
    """A field as drawn on the dashboard and as the answer line's value."""
    return {
        "odometer": lambda: f"{value} {unit}",
        "trip": lambda: f"{value:.1f} {unit}",
        "speed": lambda: f"{value} {unit}/h" if unit == "km" else f"{value} mph",
        "clock": lambda: str(value),
        "temperature": lambda: f"{value} C",
        "gear": lambda: str(value),
    }[name]()


def answer_text(values: dict[str, Any], unit: str) -> str:
    return "\n".join(f"{k}: {field_text(k, values[k], unit)}" for k in FIELDS)


def font(name: str, size: int):
    from PIL import ImageFont

    for d in FONT_DIRS:
        if (d / name).is_file():
            return ImageFont.truetype(str(d / name), size)
    return ImageFont.load_default(size=size)


def positions(layout: str) -> dict[str, tuple[int, int]]:
    """Where each field's label and value go (label at x, value at x + 110 or below)."""
    if layout == "rows":
        return {f: (12, 8 + 31 * i) for i, f in enumerate(FIELDS)}
    if layout == "grid":
        return {f: (10 + 160 * (i % 2), 12 + 62 * (i // 2)) for i, f in enumerate(FIELDS)}
    return {
        "speed": (110, 60),
        "odometer": (10, 150),
        "trip": (190, 150),
        "clock": (10, 10),
        "temperature": (190, 10),
        "gear": (250, 80),
    }  # cluster: speed in the middle


LABELS = {"odometer": "ODO", "trip": "TRIP", "speed": "SPD", "clock": "TIME", "temperature": "TEMP", "gear": "GEAR"}


def dashboard(seed: int, difficulty: int = 0) -> Dashboard:
    """The dashboard of `seed` at `difficulty` (0..3): values, layout and font from the seed."""
    from PIL import Image, ImageDraw

    if difficulty not in range(len(NOISE)):
        raise ValueError(f"difficulty must be 0..{len(NOISE) - 1}, got {difficulty}")
    r = random.Random(seed)
    values, unit = draw_values(r)
    d = Dashboard(values, unit, r.choice(LAYOUTS), r.choice(FONTS), difficulty)
    img = Image.new("RGB", SIZE, (18, 20, 26))
    draw, small, big = ImageDraw.Draw(img), font(d.font, 12), font(d.font, 18)
    for name, (x, y) in positions(d.layout).items():
        text = field_text(name, values[name], unit)
        draw.text((x, y), LABELS[name], fill=(150, 160, 170), font=small)
        xy = (x + 48, y) if d.layout == "rows" else (x, y + 16)
        draw.text(xy, text, fill=(235, 240, 245), font=big)
        d.boxes[name] = (text, xy)
    d.image = degrade(img, difficulty, r)
    return d


def degrade(img, difficulty: int, r: random.Random):
    """Noise and blur for the difficulty (seeded: the same image each time)."""
    from PIL import Image, ImageFilter

    if NOISE[difficulty]:
        import numpy as np

        rng = np.random.default_rng(r.randrange(2**32))
        arr = np.asarray(img).astype(np.float32) + rng.normal(0, NOISE[difficulty], (*img.size[::-1], 3))
        img = Image.fromarray(arr.clip(0, 255).astype("uint8"))
    if BLUR[difficulty]:
        img = img.filter(ImageFilter.GaussianBlur(BLUR[difficulty]))
    return img


DEFAULT_FOLDER = Path("~/.cache/loop/dashboards")


def dashboard_problems(
    count: int, levels: list[int], seed: int, folder: str | None, exclude: AbstractSet[str] = frozenset()
) -> list[Problem]:
    """`count` dashboards (seeded), their images saved under `folder` by content hash."""
    out_dir = Path(folder or DEFAULT_FOLDER).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    r = random.Random(seed)
    out = []
    for _ in range(count):
        s, level = r.randrange(2**31), r.choice(levels)
        d = dashboard(s, difficulty=level - 1)
        buf = io.BytesIO()
        d.image.save(buf, format="PNG")
        sha = hashlib.sha256(buf.getvalue()).hexdigest()[:16]
        path = out_dir / f"{sha}.png"
        if not path.exists():
            path.write_bytes(buf.getvalue())
        p = Problem(PROMPT, d.answer, "dashboard", "dashboard", level, meta=_meta(d, s, str(path.resolve()), sha))
        if p.answer not in exclude:
            out.append(p)
    return out


def _meta(d: Dashboard, seed: int, path: str, sha: str) -> dict[str, Any]:
    return {
        "image": path,
        "image_sha256": sha,
        "seed": seed,
        "difficulty": d.difficulty,
        "layout": d.layout,
        "unit": d.unit,
        "font": d.font,
    }
