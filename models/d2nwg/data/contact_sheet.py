"""A labelled contact sheet: a few classes × a few images of a few datasets from every family.

One row per dataset: its id and partition, then `classes` classes with
`per_class` training images each, every class captioned with its name.
Folder images (not square) are letterboxed into the tile. The sheet is
palette-quantised to stay small enough to commit.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .debian import package_file
from .registry import FAMILY_ORDER
from .spec import DatasetSpec
from .store import dataset_dir

TILE = 64
GAP = 4
LABEL_FONT = ("fonts-noto-core", "NotoSans-Regular.ttf")


def _spread(items: list[DatasetSpec], count: int) -> list[DatasetSpec]:
    """`count` items evenly spaced over the list: the middle one, or first and last and between."""
    if count <= 1:
        return items[len(items) // 2 :][:count]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def pick_rows(specs: list[DatasetSpec], rows_per_family: int) -> list[DatasetSpec]:
    """Per family, up to `rows_per_family` datasets spread over the sorted ids, about half of them unseen."""
    rows = []
    for family in FAMILY_ORDER:
        seen, unseen = (
            sorted((s for s in specs if s.family == family and s.partition == p), key=lambda s: s.dataset_id)
            for p in ("seen", "unseen")
        )
        n_unseen = min(len(unseen), rows_per_family // 2)
        n_seen = min(len(seen), rows_per_family - n_unseen)
        n_unseen = min(len(unseen), rows_per_family - n_seen)
        rows += _spread(seen, n_seen) + _spread(unseen, n_unseen)
    return rows


def _tile(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image = image.convert("RGB")
    image.thumbnail((TILE, TILE), Image.Resampling.LANCZOS)
    tile = Image.new("RGB", (TILE, TILE), (255, 255, 255))
    tile.paste(image, ((TILE - image.width) // 2, (TILE - image.height) // 2))
    return tile


def _common_words(names: list[str]) -> int:
    """How many leading words all names share ("ADLAM CAPITAL LETTER ..." → 3), so captions show the rest."""
    words = [n.split(" ") for n in names]
    count = 0
    while all(len(w) > count + 1 and w[count] == words[0][count] for w in words):
        count += 1
    return count


def _caption(name: str, common_words: int) -> str:
    return " ".join(name.split(" ")[common_words:])


def draw(specs: list[DatasetSpec], root: Path, out: Path, classes: int = 6, per_class: int = 2) -> None:
    font = ImageFont.truetype(str(package_file(*LABEL_FONT)), 11)
    header, caption = 16, 14
    row_height = header + TILE + caption + GAP
    width = GAP + classes * (per_class * (TILE + 2) + GAP)
    sheet = Image.new("RGB", (width, GAP + len(specs) * row_height), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    for row, spec in enumerate(specs):
        top = GAP + row * row_height
        title = f"{spec.dataset_id}  [{spec.partition}]  {len(spec.classes)} classes"
        pen.text((GAP, top), title, font=font, fill=(0, 0, 0) if spec.partition == "seen" else (170, 0, 0))
        folder = dataset_dir(root, spec.dataset_id)
        prefix = _common_words([c.name for c in spec.classes])
        for c, cls in enumerate(spec.classes[:classes]):
            left = GAP + c * (per_class * (TILE + 2) + GAP)
            for k in range(min(per_class, cls.train)):
                sheet.paste(_tile(folder / cls.slug / f"train-{k}.png"), (left + k * (TILE + 2), top + header))
            label = _caption(cls.name, prefix)
            while label and font.getlength(label) > per_class * (TILE + 2):
                label = label[:-1]
            pen.text((left, top + header + TILE + 1), label, font=font, fill=(60, 60, 60))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
