"""Write the course case's vision data: data/vision/odometer.xlsx (id, prompt, image, response)
and the dashboard images it names (data/vision/images/), drawn by loop.problems.odometer.

    python scripts/make_vision_data.py [--rows 8] [--out data/vision]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import openpyxl

from loop.problems.odometer import PROMPT, dashboard


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--out", default="data/vision")
    a = ap.parse_args()
    out = Path(a.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "prompt", "image", "response"])
    for i in range(1, a.rows + 1):
        d = dashboard(seed=i, difficulty=i % 2)  # clean and lightly noisy, alternating
        name = f"images/{i}-vehicle-odometer-reading.jpg"
        d.image.save(out / name, quality=90)
        ws.append([i, PROMPT, name, d.answer])
    wb.save(out / "odometer.xlsx")


if __name__ == "__main__":
    main()
