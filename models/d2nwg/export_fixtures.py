"""Write the fixtures the TypeScript tests replay: backbone test images and recorded DDIM runs.

Deterministic drawings that cover what preprocessing must handle: transparency
(a glyph on a transparent background), a wide and a tall image (letterboxing),
a tiny image (upsampling) and a large one (antialiased downsampling).

The DDIM traces (`ddim-trace.json`) record short runs of the sampler with a
synthetic ε, every step's outputs included, for two schedules and η values.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg fixtures [--out DIR]

Writes PNGs into DIR/images, DIR/ddim-trace.json, DIR/gray28-trace.json (the cnn
family's 28×28 conversion of each image), DIR/refine.json (one refine of the
head trace's first head, refine.py) and DIR/residual-support.json (the residual
head's supports, residual_head.py, on synthetic statistics; default DIR: `fixtures`).
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
    (args.out / "residual-support.json").write_text(json.dumps(residual_support_fixture()) + "\n")
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


def rounded(values: np.ndarray) -> np.ndarray:
    """`values` at 7 significant digits (float64): what the fixture writes, and, as float32, what the factory
    side computes from, so both languages start from the same numbers."""
    return np.array([float(f"{v:.7g}") for v in np.ravel(values)]).reshape(np.shape(values))


def residual_support_fixture() -> dict:
    """Every field of `residual_head.build_support` and one `decode_residual` for supports that cover 1
    image a class (no principal directions), 2 (no second one), mixed counts, 5, two classes and one,
    on synthetic seen statistics (F = 24, r = 8) with the release basis and shrinkage."""
    from .residual_head import ResidualConfig, ResidualScale, SeenStatistics, build_support, decode_residual

    rng = np.random.default_rng(11)
    dim, rank, samples = 24, 8, 2
    config = ResidualConfig(global_rank=3)
    reference_scale = 50.0
    vectors, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    eigenvectors = rounded(vectors[:, :rank].T)
    eigenvalues = rounded(np.sort(10 ** rng.uniform(-4, -2, rank))[::-1])
    variance = rounded(rng.uniform(2e-4, 2e-3, dim))
    stats = SeenStatistics(eigenvectors.astype(np.float32), eigenvalues.astype(np.float32), variance.astype(np.float32))
    coords = config.global_rank + len(config.basis)
    scale_weight = rounded(np.linspace(0.5, 2.0, coords))
    residual_scale = ResidualScale(scale_weight.astype(np.float32), 0.3)

    def tensor(a: np.ndarray) -> dict:
        return {"shape": list(np.shape(a)), "data": rounded(np.asarray(a, np.float64)).ravel().tolist()}

    cases = []
    for name, counts in (("one image", (1, 1, 1, 1)), ("two images", (2, 2, 2)), ("mixed", (1, 3, 5)),
                         ("five images", (5, 5, 5, 5)), ("two classes", (3, 4)), ("one class", (3,))):
        centres = rng.standard_normal((len(counts), dim))
        images = []
        for centre, count in zip(centres, counts):
            x = centre + 0.5 * rng.standard_normal((count, dim))
            images.append(rounded(x / np.linalg.norm(x, axis=1, keepdims=True)))
        support = build_support([x.astype(np.float32) for x in images], stats, config, reference_scale)
        residual = rounded(rng.standard_normal((samples, len(counts), coords + 1)))
        weight, bias = decode_residual(residual.astype(np.float32), support, residual_scale)
        mask = support.image_mask
        cases.append({
            "name": name,
            "images": [x.ravel().tolist() for x in images],
            "weight": tensor(support.weight), "bias": tensor(support.bias), "basis": tensor(support.basis),
            "factors": tensor(support.factors), "image_features": tensor(support.image_features),
            "image_mask": {"shape": list(mask.shape), "data": mask.astype(int).ravel().tolist()},
            "class_features": tensor(support.class_features), "shots": support.shots,
            "residual": tensor(residual), "decoded_weight": tensor(weight), "decoded_bias": tensor(bias),
        })
    return {
        "stats": {"eigenvectors": tensor(eigenvectors), "eigenvalues": eigenvalues.tolist(),
                  "variance": variance.tolist()},
        "spec": {"shrinkage": config.shrinkage, "basis": list(config.basis), "global_rank": config.global_rank,
                 "reference_scale": reference_scale},
        "residual_scale": {"weight": scale_weight.tolist(), "bias": residual_scale.bias},
        "supports": cases,
    }
