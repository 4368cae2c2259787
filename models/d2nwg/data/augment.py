"""Seeded augmentation of a sprite (a glyph or an emoji with alpha) into a small RGB image.

Every random choice is drawn from the per-image generator the caller passes
in, so an image depends only on its seed and its sprite.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageFilter

from .settings import DatasetsConfig


# Sprites are placed and rotated on a canvas this many times the output size,
# then box-filtered down: antialiased edges without per-op resampling blur.
SUPERSAMPLE = 4
# Grey level (0..255) of the paper behind a sprite, drawn per image.
PAPER_LEVELS = (215.0, 255.0)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    rotation_deg: float  # uniform in ±rotation_deg
    fill_min: float  # the sprite's size (its longer side, or `reference`), as a fraction of the image side
    fill_max: float
    offset_frac: float  # centre offset, as a fraction of the image side, per axis
    blur_max: float  # Gaussian blur radius in output pixels, uniform in [0, blur_max]
    noise_max: float  # Gaussian noise std in 0..255 units, uniform in [0, noise_max]


def from_config(config: DatasetsConfig) -> Augmentation:
    return Augmentation(
        rotation_deg=config.rotation_deg,
        fill_min=config.fill_min,
        fill_max=config.fill_max,
        offset_frac=config.offset_frac,
        blur_max=config.blur_max,
        noise_max=config.noise_max,
    )


def place(
    sprite: Image.Image, rng: np.random.Generator, aug: Augmentation, canvas: int, reference: float | None = None
) -> Image.Image:
    """The sprite scaled, rotated and shifted onto a transparent canvas, premultiplied ("RGBa").

    The length `reference` (default: the sprite's longer side) is scaled to
    `fill` of the canvas; a sprite that then overflows the canvas is shrunk to fit.
    """
    sprite = sprite.convert("RGBa")  # premultiplied, so resampling leaves no dark fringes
    fill = rng.uniform(aug.fill_min, aug.fill_max)
    scale = canvas * fill / (reference or max(sprite.size))
    size = (max(1, round(sprite.width * scale)), max(1, round(sprite.height * scale)))
    sprite = sprite.resize(size, Image.Resampling.BICUBIC)
    angle = rng.uniform(-aug.rotation_deg, aug.rotation_deg)
    sprite = sprite.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    if max(sprite.size) > canvas:  # a rotated corner would leave the image: shrink to fit
        shrink = canvas / max(sprite.size)
        sprite = sprite.resize(
            (max(1, int(sprite.width * shrink)), max(1, int(sprite.height * shrink))), Image.Resampling.BICUBIC
        )
    offsets = []
    for free in (canvas - sprite.width, canvas - sprite.height):
        reach = min(free / 2, aug.offset_frac * canvas)
        offsets.append(round(free / 2 + rng.uniform(-reach, reach)))
    out = Image.new("RGBa", (canvas, canvas), (0, 0, 0, 0))
    out.paste(sprite, tuple(offsets))
    return out


def render(
    sprite: Image.Image,
    rng: np.random.Generator,
    aug: Augmentation,
    size: int,
    paper: float = 255.0,
    reference: float | None = None,
) -> Image.Image:
    """The augmented sprite on paper of grey level `paper`, blurred and noised: RGB, size × size."""
    placed = np.asarray(place(sprite, rng, aug, size * SUPERSAMPLE, reference), dtype=np.float32)
    alpha = placed[..., 3:] / 255.0
    composite = placed[..., :3] + paper * (1.0 - alpha)  # premultiplied "over"
    image = Image.fromarray(np.clip(np.rint(composite), 0, 255).astype(np.uint8), "RGB")
    image = image.reduce(SUPERSAMPLE)
    radius = rng.uniform(0.0, aug.blur_max)
    image = image.filter(ImageFilter.GaussianBlur(radius))
    sigma = rng.uniform(0.0, aug.noise_max)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0.0, sigma, (size, size, 3))
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")
