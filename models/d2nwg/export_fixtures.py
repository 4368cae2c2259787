"""Write the fixtures the TypeScript tests replay: backbone test images and recorded DDIM runs.

Deterministic drawings that cover what preprocessing must handle: transparency
(a glyph on a transparent background), a wide and a tall image (letterboxing),
a tiny image (upsampling) and a large one (antialiased downsampling).

The DDIM traces (`ddim-trace.json`) record short runs of the sampler with a
synthetic ε, every step's outputs included, for two schedules and η values.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg fixtures [--out DIR]

Writes PNGs into DIR/images, DIR/ddim-trace.json, DIR/gray28-trace.json (the cnn
family's 28×28 conversion of each image) and DIR/refine.json (one refine of the
head trace's first head, refine.py; default DIR: `fixtures`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import ddim
from .config import MODELS_DIR, RELEASE_DIR
from .refine import refine_fixture


def drawings() -> dict[str, Image.Image]:
    rng = np.random.default_rng(7)
    glyph = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(glyph)
    draw.ellipse((12, 8, 52, 56), outline=(20, 20, 160, 255), width=7)
    draw.line((20, 50, 46, 14), fill=(200, 30, 30, 200), width=5)

    wide = np.zeros((60, 150, 3), dtype=np.uint8)
    wide[..., 0] = np.linspace(0, 255, 150, dtype=np.uint8)[None, :]
    wide[..., 1] = np.linspace(255, 0, 60, dtype=np.uint8)[:, None]
    wide[20:40, 60:90, 2] = 255

    tall = np.full((90, 36, 3), 255, dtype=np.uint8)
    tall[::6] = (0, 120, 0)
    tall[:, 10:14] = (90, 40, 10)

    tiny = (rng.random((8, 8, 3)) * 255).astype(np.uint8)

    large = np.zeros((480, 640, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:480, 0:640]
    large[..., 0] = ((xx // 8 + yy // 8) % 2 * 255).astype(np.uint8)
    large[..., 1] = (xx * 255 // 639).astype(np.uint8)
    large[..., 2] = (yy * 255 // 479).astype(np.uint8)

    return {
        "glyph-rgba.png": glyph,
        "wide.png": Image.fromarray(wide),
        "tall.png": Image.fromarray(tall),
        "tiny.png": Image.fromarray(tiny),
        "large-checker.png": Image.fromarray(large),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg fixtures", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "fixtures")
    args = parser.parse_args(argv)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    for name, image in drawings().items():
        image.save(args.out / "images" / name, format="PNG", optimize=False)
    (args.out / "ddim-trace.json").write_text(json.dumps(ddim_traces()) + "\n")
    (args.out / "gray28-trace.json").write_text(json.dumps(gray28_trace(args.out / "images")) + "\n")
    (args.out / "refine.json").write_text(json.dumps(refine_fixture(RELEASE_DIR / "head" / "trace.json")) + "\n")
    print(f"wrote {len(drawings())} images, {len(ddim_traces())} DDIM traces and the 28×28 conversions to {args.out}")
    return 0


def gray28_trace(folder: Path) -> list[dict]:
    """The cnn family's 28×28 conversion of every fixture image, as 8-bit values, with the polarity
    judged per image and both polarities forced."""
    from .cnn_zoo import to_grayscale_28

    out = []
    for path in sorted(folder.glob("*.png")):
        for dark in (None, False, True):
            pixels = np.round(to_grayscale_28(path, dark) * 255).astype(int)
            out.append({"file": path.name, "dark_background": dark, "pixels": pixels.ravel().tolist()})
    return out


def ddim_traces() -> list[dict]:
    return [
        ddim.trace(ddim.NoiseSchedule(beta_schedule="linear"), steps=5, eta=0.0, seed=1, shape=(2, 3)),
        ddim.trace(ddim.NoiseSchedule(beta_schedule="cosine"), steps=4, eta=0.5, seed=2, shape=(3, 2)),
        ddim.trace(ddim.NoiseSchedule(beta_schedule="scaled_linear", beta_start=8.5e-4, beta_end=1.2e-2),
                   steps=3, eta=1.0, seed=3, shape=(4,)),
    ]
