"""Field-wise reward for dashboard readings (loop.problems.odometer): `dashboard_fields`.

The answer and the completion are `field: value` lines (odometer, trip, speed, clock,
temperature, gear; any order, case-insensitive, `=` also separates). Each gold field scores
1 when the completion's value matches it: numbers (odometer, trip, speed, temperature)
within `TOLERANCE` of the gold and in the same unit where the gold names one; clock and gear
exactly (clock as HH:MM, `9:05` = `09:05`). The reward is the mean over the gold's fields;
`None` when the completion has none of the fields in a readable form (unparsable), so an
empty or free-text answer is not scored as wrong-but-formatted. The TRL reward class is
`rewards.funcs.DashboardFieldsReward` (gold: the `answer` column).
"""

from __future__ import annotations

import re

TOLERANCE = {"odometer": 0.0, "trip": 0.1, "speed": 1.0, "temperature": 0.0}  # absolute, in the drawn unit
NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)\s*([a-z/]*)")
LINE = re.compile(r"^\s*[-*]?\s*(odometer|trip|speed|clock|temperature|gear)\s*[:=]\s*(.+?)\s*$", re.I | re.M)
UNIT_ALIASES = {"km/h": "km", "kmh": "km", "kph": "km", "mph": "mi", "mi/h": "mi", "km": "km", "mi": "mi", "c": "c"}


def fields(text: str) -> dict[str, str]:
    """`field: value` lines -> {field: value} (the first line of each field counts)."""
    out: dict[str, str] = {}
    for name, value in LINE.findall(text):
        out.setdefault(name.lower(), value.strip())
    return out


def _number(value: str) -> tuple[float, str] | None:
    m = NUMBER.match(value.strip().lower().replace(",", ""))
    return (float(m.group(1)), UNIT_ALIASES.get(m.group(2), m.group(2))) if m else None


def _clock(value: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def field_match(name: str, gold: str, pred: str) -> bool | None:
    """Whether `pred` reads the gold field; None when `pred` is not a readable value."""
    if name in TOLERANCE:
        g, p = _number(gold), _number(pred)
        if p is None or g is None:
            return None
        unit_ok = not g[1] or not p[1] or g[1] == p[1]
        return unit_ok and abs(g[0] - p[0]) <= TOLERANCE[name] + 1e-9
    if name == "clock":
        g2, p2 = _clock(gold), _clock(pred)
        return None if p2 is None else g2 == p2
    return pred.strip().upper() == gold.strip().upper() if pred.strip() else None


def score(gold_text: str, text: str) -> float | None:
    gold, pred = fields(gold_text), fields(text)
    if not gold:
        return None
    marks = {k: field_match(k, gold[k], pred[k]) for k in gold if k in pred}
    if all(v is None for v in marks.values()):
        return None
    return sum(bool(v) for v in marks.values()) / len(gold)
