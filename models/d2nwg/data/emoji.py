"""Emoji pool: one dataset per emoji group, its sub-groups as classes, their emoji as instances.

`emoji/<group>` (e.g. `emoji/food-drink`) has classes such as "food-fruit"
whose images are the fruit emoji, so a class holds genuinely different
pictures. Source: the fully-qualified emoji of emoji-test.txt (unicode-data),
without skin-tone variants (copies of one picture in five colours) and without
the "Component" group (bare swatches), drawn with Noto Color Emoji.

Noto Color Emoji is a bitmap (CBDT) font: FreeType draws it only at its strike
size, 109, with embedded colour; the sprite is then scaled by the augmentation.
Image k of a class shows instance perm[k mod n] (train) or
perm[(train + k) mod n] (test) of a seeded permutation, so classes with at
least train + test emoji test on emoji never seen in training.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import augment
from .debian import package_file, package_version
from .settings import DatasetsConfig
from .spec import ClassSpec, DatasetSpec, class_slugs, derive_seed, image_rng, slugify


FONT_PACKAGE = "fonts-noto-color-emoji"
UNICODE_PACKAGE = "unicode-data"
RENDERER = "emoji/1"
STRIKE_SIZE = 109  # the only size the bitmap font has
SKIN_TONES = range(0x1F3FB, 0x1F400)
SKIPPED_GROUPS = ("Component",)

LINE = re.compile(r"^(?P<codepoints>[0-9A-F ]+?)\s*;\s*(?P<status>[\w-]+)\s*#\s*\S+\s+E\d+\.\d+\s+(?P<name>.+)$")


@dataclasses.dataclass(frozen=True)
class Emoji:
    group: str
    subgroup: str
    text: str
    name: str


def emoji_list() -> list[Emoji]:
    """Fully-qualified emoji of emoji-test.txt in file order, skin-tone variants left out."""
    emoji, group, subgroup = [], "", ""
    for line in package_file(UNICODE_PACKAGE, "emoji-test.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif (match := LINE.match(line)) and match.group("status") == "fully-qualified":
            codepoints = [int(c, 16) for c in match.group("codepoints").split()]
            if group not in SKIPPED_GROUPS and not any(c in SKIN_TONES for c in codepoints):
                emoji.append(Emoji(group, subgroup, "".join(map(chr, codepoints)), match.group("name")))
    return emoji


def plan(config: DatasetsConfig) -> list[DatasetSpec]:
    by_group: dict[str, dict[str, list[str]]] = {}
    for e in emoji_list():
        by_group.setdefault(e.group, {}).setdefault(e.subgroup, []).append(e.text)
    font = str(package_file(FONT_PACKAGE, "NotoColorEmoji.ttf"))
    specs = []
    for group, subgroups in sorted(by_group.items()):
        names = sorted(s for s, items in subgroups.items() if len(items) >= config.emoji_min_instances)
        if len(names) < 2:
            continue
        classes = tuple(
            ClassSpec(name, slug, tuple(subgroups[name]), config.train_per_class, config.test_per_class)
            for name, slug in zip(names, class_slugs(names))
        )
        specs.append(
            DatasetSpec(
                dataset_id=f"emoji/{slugify(group)}",
                family="emoji",
                unit=f"emoji:{group}",
                partition="unassigned",
                packages={p: package_version(p) for p in (FONT_PACKAGE, UNICODE_PACKAGE)},
                classes=classes,
                params={
                    "renderer": RENDERER,
                    "seed": config.seed,
                    "image_size": config.image_size,
                    "font": font,
                    "augmentation": dataclasses.asdict(augment.from_config(config)),
                },
            )
        )
    return specs


@functools.lru_cache(maxsize=512)
def emoji_sprite(text: str, font_path: str) -> Image.Image:
    """The emoji in colour on transparency, cropped to its pixels."""
    font = ImageFont.truetype(font_path, STRIKE_SIZE)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("RGBA", (right - left + 8, bottom - top + 8), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((4 - left, 4 - top), text, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"Noto Color Emoji draws nothing for {text!r}")
    return canvas.crop(box)


def render_dataset(spec: DatasetSpec) -> Iterator[tuple[int, str, int, Image.Image]]:
    params = spec.params
    aug = augment.Augmentation(**params["augmentation"])
    for class_index, cls in enumerate(spec.classes):
        order = np.random.default_rng(derive_seed(params["seed"], spec.dataset_id, cls.name, "instances"))
        perm = order.permutation(len(cls.instances))
        for split, first in (("train", 0), ("test", cls.train)):
            for k in range(getattr(cls, split)):
                text = cls.instances[perm[(first + k) % len(perm)]]
                rng = image_rng(params["seed"], spec.dataset_id, cls.name, split, k)
                paper = rng.uniform(*augment.PAPER_LEVELS)
                image = augment.render(emoji_sprite(text, params["font"]), rng, aug, params["image_size"], paper=paper)
                yield class_index, split, k, image
