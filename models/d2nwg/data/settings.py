"""The datasets stage's settings (`python3 -m d2nwg datasets`, `configs/datasets/NAME.json`), read by every pool's planner."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetsConfig:
    seed: int = 20250124  # every image and every sample of source files derives from it
    partition_seed: int = 20250124  # ranks partition units; apart from `seed` so re-rendering never moves the split
    image_size: int = 64  # side of generated images (glyphs, emoji, fashion-mnist, digits-8x8)
    folder_max_side: int = 128  # clipart and stamps keep their aspect, longer side at most this
    train_per_class: int = 30  # generated pools; folder pools take at most train + test, split in this ratio
    test_per_class: int = 10
    fashion_train_per_class: int = 100  # seeded subset of the official train split
    fashion_test_per_class: int = 100  # ... and of the official test split
    digits8x8_train_per_class: int = 100  # load_digits has 174..183 images per class
    digits8x8_test_per_class: int = 70
    letters_per_set_max: int = 60  # letters of one script and case, lowest code points first
    letters_per_dataset_min: int = 5
    letters_per_dataset_max: int = 30  # a larger set is split into near-equal datasets
    font_families_per_set: int = 4
    font_styles_per_family: int = 3  # in glyphs.STYLE_ORDER
    glyph_stroke_max: float = 0.02  # synthetic emboldening, as a fraction of the font size
    glyph_slant_max: float = 0.25  # synthetic shear, x shift per unit height
    rotation_deg: float = 12.0  # augmentation of glyphs and emoji: see data/augment.py
    fill_min: float = 0.55
    fill_max: float = 0.85
    offset_frac: float = 0.08
    blur_max: float = 0.8
    noise_max: float = 6.0
    emoji_min_instances: int = 2  # emoji in a sub-group for it to be a class
    clipart_min_images: int = 20  # usable PNGs directly in a folder for it to be a class
    stamps_min_images: int = 8
    unseen_glyph_digit_scripts: int = 10  # partition quotas: see data/partition.py
    unseen_glyph_letter_scripts: int = 12
    unseen_emoji_groups: int = 3
    unseen_clipart_categories: int = 4
    unseen_stamps_categories: int = 2
    datasets_per_family: int = 0  # 0: all; otherwise a few per family, seen and unseen alike (CI)
    # Budget: every image costs ~50 ms of backbone time on these machines, so the
    # large letter pool is thinned (see `within_budget`).
    letter_datasets_per_unit: int = 1  # 0: all; else the first datasets of each script (by id)
    seen_letter_units_max: int = 60  # 0: all; else a seeded choice of seen scripts
    seen_glyph_train_per_class: int = 16  # seen glyph pools need fewer images than the 20-shot evaluation
    seen_glyph_test_per_class: int = 6
