"""Images referenced by a data row (vision sources): resolved, checked, hashed, opened.

`check_image(where, base, ref, max_side)` resolves `ref` against the data file's folder
(absolute paths stay), refuses a missing file, a folder, or bytes PIL cannot decode as an
image with ProposeError naming the row (`file:line`) and the path, and returns the image's
provenance: its resolved path, sha256 of the file's bytes (16 hex), format, original size
and the size after the `max_side` limit. `open_image(path, max_side)` is what training and
sampling use: PIL, converted to RGB, shrunk (aspect kept) so its longer side is at most
`max_side` pixels; the same function both times, so the model sees what validation checked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from loop.problems import ProposeError

MAX_IMAGE_BYTES = 64 << 20  # one image file; larger is refused before it is decoded


def resolve(base: Path, ref: str) -> Path:
    p = Path(ref).expanduser()
    return p if p.is_absolute() else base / p


def check_image(where: str, base: Path, ref: Any, max_side: int) -> dict[str, Any]:
    """The provenance of one image a row names (ProposeError naming row and path if bad)."""
    if not isinstance(ref, str) or not ref.strip():
        raise ProposeError(f"{where}: image path missing or empty (got {ref!r})")
    path = resolve(base, ref.strip())
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "not found"
        raise ProposeError(f"{where}: image {ref!r} {what} (resolved to {path})")
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ProposeError(f"{where}: image {ref!r} is {size} bytes, over the limit of {MAX_IMAGE_BYTES}")
    data = path.read_bytes()
    try:
        img = _decode(path)
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError... alike
        raise ProposeError(
            f"{where}: image {ref!r} ({path}) is not a readable image: {type(e).__name__}: {e}"
        ) from None
    return {
        "path": str(path.resolve()),
        "sha256": hashlib.sha256(data).hexdigest()[:16],
        "format": img.format,
        "size": list(img.size),
        "resized": list(fit(img.size, max_side)),
    }


def _decode(path: Path):
    from PIL import Image

    with Image.open(path) as img:
        img.verify()  # a truncated or corrupt file fails here, before training
    img = Image.open(path)
    img.load()
    return img


def fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(width, height) shrunk so the longer side is at most max_side (never enlarged)."""
    w, h = size
    scale = min(1.0, max_side / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def open_image(path: str | Path, max_side: int):
    """The image as training and sampling see it: RGB, longer side at most max_side."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
    target = fit(rgb.size, max_side)
    return rgb if target == rgb.size else rgb.resize(target, Image.Resampling.BICUBIC)
