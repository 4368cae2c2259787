"""Glyph pools: the digits and letters of the scripts Noto covers, rendered in several fonts.

- `glyph-digits/<set>`: the ten characters of one decimal digit set (Unicode
  category Nd), e.g. "DEVANAGARI DIGIT ZERO" … "NINE". The set is named by the
  prefix of the character names ("MYANMAR SHAN DIGIT ONE" → `myanmar-shan`);
  plain ASCII digits ("DIGIT ONE") are the set `ascii`. Styled copies of the
  ASCII digits (mathematical, fullwidth, segmented) have a compatibility
  decomposition and are left out, like every decomposable character.
- `glyph-letters/<set>[-case][-k]`: letters (Lu, Ll, Lo) named
  "<SCRIPT> [CAPITAL|SMALL ]LETTER <X>" with a one-word X, grouped by prefix and
  case, capped at `letters_per_set_max` by code point and split into datasets
  of at most `letters_per_dataset_max` classes.

A font renders a character only if its cmap maps it, so no image shows a
missing-glyph box. Fonts come from fonts-noto-core and fonts-noto-extra:
families named after the script first, then generic Noto Sans/Serif (which
cover Latin, Greek, Cyrillic), each in a few weights. Each image picks a font,
a synthetic stroke and slant, then the shared augmentation; glyphs are scaled
by the font size, not by their ink, so a dot-like zero stays small.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import re
import unicodedata
from typing import Iterator

import numpy as np
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

from . import augment
from .debian import package_file, package_files, package_version
from .settings import DatasetsConfig
from .spec import ClassSpec, DatasetSpec, class_slugs, image_rng, slugify


FONT_PACKAGES = ("fonts-noto-core", "fonts-noto-extra")
UNICODE_PACKAGE = "unicode-data"
RENDERER = "glyphs/1"  # bump when the drawing code changes, so cached datasets rebuild

# Families that are not text: symbols, maths and music have no letters of a script.
NON_TEXT_FAMILIES = ("NotoSansMath", "NotoSansSymbols", "NotoSansSymbols2", "NotoMusic")
GENERIC_FAMILIES = ("NotoSans", "NotoSerif", "NotoSansDisplay", "NotoSerifDisplay")
# Styles in the order they are taken: weight contrast first, then width and slant.
STYLE_ORDER = ("Regular", "Bold", "Light", "Black", "Italic", "ExtraCondensedSemiBold", "Thin", "Medium")

# Ink height of a typical letter or digit, as a fraction of the font size (em): Latin capitals are ~0.7.
TYPICAL_INK_EM = 0.7
# Grey level (0..255) of the ink, drawn per image; the paper's is augment.PAPER_LEVELS.
INK_LEVELS = (0.0, 80.0)

LETTER_NAME = re.compile(r"^(?P<prefix>.+?) (?:(?P<case>CAPITAL|SMALL) )?LETTER (?P<letter>\S+)$")
DIGIT_NAME = re.compile(r"^(?:(?P<prefix>.+) )?DIGIT (?P<digit>\S+)$")


@dataclasses.dataclass(frozen=True)
class Font:
    family: str
    style: str
    path: str


@dataclasses.dataclass(frozen=True)
class GlyphSet:
    """Characters that form one task: a digit set, or the letters of one script prefix and case."""

    family: str  # "glyph-digits" or "glyph-letters"
    name: str  # dataset name inside the family, e.g. "devanagari", "latin-capital"
    script: str  # Unicode Script property of its characters (Scripts.txt), e.g. "Devanagari"
    codepoints: tuple[int, ...]


# --- Unicode ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _script_ranges() -> tuple[list[int], list[int], list[str]]:
    starts, ends, names = [], [], []
    for line in package_file(UNICODE_PACKAGE, "Scripts.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        span, script = (part.strip() for part in line.split(";"))
        first, _, last = span.partition("..")
        starts.append(int(first, 16))
        ends.append(int(last or first, 16))
        names.append(script)
    order = sorted(range(len(starts)), key=starts.__getitem__)
    return [starts[i] for i in order], [ends[i] for i in order], [names[i] for i in order]


def script_of(codepoint: int) -> str:
    starts, ends, names = _script_ranges()
    i = bisect.bisect_right(starts, codepoint) - 1
    return names[i] if i >= 0 and codepoint <= ends[i] else "Unknown"


def _plain_characters(categories: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    """(code point, name) of characters in `categories` that have no decomposition."""
    for codepoint in range(0x110000):
        char = chr(codepoint)
        if unicodedata.category(char) in categories and not unicodedata.decomposition(char):
            yield codepoint, unicodedata.name(char, "")


# --- fonts -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def text_fonts() -> dict[str, dict[str, str]]:
    """family → style → file, for the TrueType fonts of the Noto packages."""
    families: dict[str, dict[str, str]] = {}
    for package in FONT_PACKAGES:
        for path in package_files(package):
            if path.suffix != ".ttf":
                continue
            family, _, style = path.stem.partition("-")
            if family not in NON_TEXT_FAMILIES:
                families.setdefault(family, {})[style or "Regular"] = str(path)
    return families


@functools.lru_cache(maxsize=1)
def _font_packages() -> dict[str, str]:
    return {str(path): package for package in FONT_PACKAGES for path in package_files(package)}


def font_package(path: str) -> str:
    return _font_packages()[path]


@functools.lru_cache(maxsize=None)
def font_cmap(path: str) -> frozenset[int]:
    return frozenset(TTFont(path, lazy=True).getBestCmap() or {})


def family_cmap(family: str) -> frozenset[int]:
    styles = text_fonts()[family]
    return font_cmap(styles.get("Regular") or styles[sorted(styles)[0]])


def _family_rank(family: str, script: str) -> int:
    token = script.replace("_", "").lower()
    name = family.lower()
    if token and name == f"notosans{token}":
        return 0
    if token and name == f"notoserif{token}":
        return 1
    if token and token in name:
        return 2
    if family in GENERIC_FAMILIES:
        return 3
    return 4  # borrowed: a font of another script that happens to map these characters


def choose_fonts(glyphs: GlyphSet, config: DatasetsConfig) -> tuple[list[Font], list[int]]:
    """Fonts for a set and the characters they all render.

    The best-ranked family that maps most of the set decides which characters
    stay; further families must map all of those. Families of other scripts
    are used only when no family of the set's own script or a generic one maps it.
    """
    wanted = set(glyphs.codepoints)
    ranked = sorted((_family_rank(f, glyphs.script), f) for f in text_fonts() if wanted & family_cmap(f))
    own = [(r, f) for r, f in ranked if r < 4] or ranked
    if not own:
        return [], []
    best = [f for r, f in own if r == own[0][0]]
    primary = max(best, key=lambda f: len(wanted & family_cmap(f)))  # ties: the first by name
    kept = sorted(wanted & family_cmap(primary))
    families = [primary] + [f for _, f in own if f != primary and set(kept) <= family_cmap(f)]
    fonts = []
    for family in families[: config.font_families_per_set]:
        styles = [s for s in STYLE_ORDER if s in text_fonts()[family]] or sorted(text_fonts()[family])[:1]
        for style in styles[: config.font_styles_per_family]:
            path = text_fonts()[family][style]
            if set(kept) <= font_cmap(path):  # styles of one family need not map the same characters
                fonts.append(Font(family, style, path))
    return fonts, kept


# --- sets and datasets -----------------------------------------------------------------------


def digit_sets() -> list[GlyphSet]:
    by_prefix: dict[str, list[int]] = {}
    for codepoint, name in _plain_characters(("Nd",)):
        match = DIGIT_NAME.match(name)
        if match:
            by_prefix.setdefault(match.group("prefix") or "ASCII", []).append(codepoint)
    return [
        GlyphSet("glyph-digits", slugify(prefix), script_of(cps[0]), tuple(sorted(cps)))
        for prefix, cps in sorted(by_prefix.items())
        if len(cps) == 10
    ]


def letter_sets() -> list[GlyphSet]:
    by_key: dict[tuple[str, str], list[int]] = {}
    for codepoint, name in _plain_characters(("Lu", "Ll", "Lo")):
        match = LETTER_NAME.match(name)
        if match:
            by_key.setdefault((match.group("prefix"), (match.group("case") or "").lower()), []).append(codepoint)
    sets = []
    for (prefix, case), cps in sorted(by_key.items()):
        name = slugify(f"{prefix} {case}")
        sets.append(GlyphSet("glyph-letters", name, script_of(cps[0]), tuple(sorted(cps))))
    return sets


def _chunks(items: list[int], largest: int) -> list[list[int]]:
    """`items` in order, split into the fewest nearly equal chunks of at most `largest`."""
    count = math.ceil(len(items) / largest)
    size, extra = divmod(len(items), count)
    chunks, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


def _dataset(
    glyphs: GlyphSet, name: str, codepoints: list[int], fonts: list[Font], config: DatasetsConfig
) -> DatasetSpec:
    names = [unicodedata.name(chr(cp)) for cp in codepoints]
    classes = tuple(
        ClassSpec(n, slug, (chr(cp),), config.train_per_class, config.test_per_class)
        for n, slug, cp in zip(names, class_slugs(names), codepoints)
    )
    packages = sorted({font_package(f.path) for f in fonts})
    return DatasetSpec(
        dataset_id=f"{glyphs.family}/{name}",
        family=glyphs.family,
        unit=f"glyph:{glyphs.script}",
        partition="unassigned",
        packages={p: package_version(p) for p in packages},
        classes=classes,
        params={
            "renderer": RENDERER,
            "seed": config.seed,
            "image_size": config.image_size,
            "fonts": [f.path for f in fonts],
            "stroke_max": config.glyph_stroke_max,
            "slant_max": config.glyph_slant_max,
            "augmentation": dataclasses.asdict(augment.from_config(config)),
        },
    )


def plan(config: DatasetsConfig) -> list[DatasetSpec]:
    specs = []
    for glyphs in digit_sets():
        fonts, kept = choose_fonts(glyphs, config)
        if fonts and len(kept) == 10:
            specs.append(_dataset(glyphs, glyphs.name, kept, fonts, config))
    for glyphs in letter_sets():
        fonts, kept = choose_fonts(glyphs, config)
        kept = kept[: config.letters_per_set_max]
        if not fonts or len(kept) < config.letters_per_dataset_min:
            continue
        chunks = _chunks(kept, config.letters_per_dataset_max)
        for i, chunk in enumerate(chunks, start=1):
            name = glyphs.name if len(chunks) == 1 else f"{glyphs.name}-{i}"
            specs.append(_dataset(glyphs, name, chunk, fonts, config))
    return specs


# --- rendering -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@functools.lru_cache(maxsize=1024)
def glyph_mask(char: str, path: str, size: int, stroke: int) -> Image.Image | None:
    """The character's ink as an "L" mask cropped to its bounding box; None if the font draws nothing."""
    font = _font(path, size)
    left, top, right, bottom = font.getbbox(char, stroke_width=stroke)
    pad = stroke + 4
    mask = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(mask).text((pad - left, pad - top), char, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    box = mask.getbbox()
    return mask.crop(box) if box else None


def _slanted(mask: Image.Image, slant: float) -> Image.Image:
    """The mask sheared horizontally by `slant` (x shift per unit of height), like an oblique face."""
    width, height = mask.size
    out_width = width + math.ceil(abs(slant) * height)
    # PIL maps output → input: x_in = x_out + slant·(y − h/2) − (out_width − width)/2
    coefficients = (1, slant, -slant * height / 2 - (out_width - width) / 2, 0, 1, 0)
    return mask.transform((out_width, height), Image.Transform.AFFINE, coefficients, Image.Resampling.BICUBIC)


def render_image(char: str, fonts: list[str], params: dict, rng: np.random.Generator) -> Image.Image:
    size = params["image_size"]
    font_px = size * augment.SUPERSAMPLE
    first = int(rng.integers(len(fonts)))
    stroke = int(round(rng.uniform(0.0, params["stroke_max"]) * font_px))
    slant = rng.uniform(-params["slant_max"], params["slant_max"])
    ink = rng.uniform(*INK_LEVELS)
    paper = rng.uniform(*augment.PAPER_LEVELS)
    for i in range(len(fonts)):  # a font whose glyph is empty hands over to the next one
        mask = glyph_mask(char, fonts[(first + i) % len(fonts)], font_px, stroke)
        if mask is not None:
            break
    else:
        raise ValueError(f"no font draws {unicodedata.name(char)} (U+{ord(char):04X})")
    mask = _slanted(mask, slant)
    ink_level = int(round(ink))
    sprite = Image.merge("RGBA", (*(Image.new("L", mask.size, ink_level),) * 3, mask))
    aug = augment.Augmentation(**params["augmentation"])
    # Scale by the font size, not the ink: a dot stays small beside a letter (TYPICAL_INK_EM of the em → `fill`).
    return augment.render(sprite, rng, aug, size, paper=paper, reference=TYPICAL_INK_EM * font_px)


def render_dataset(spec: DatasetSpec) -> Iterator[tuple[int, str, int, Image.Image]]:
    params = spec.params
    for class_index, cls in enumerate(spec.classes):
        for split in ("train", "test"):
            for k in range(getattr(cls, split)):
                rng = image_rng(params["seed"], spec.dataset_id, cls.name, split, k)
                yield class_index, split, k, render_image(cls.instances[0], params["fonts"], params, rng)
