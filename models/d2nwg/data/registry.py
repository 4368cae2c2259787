"""The registry: every dataset with its family, sources, classes, image counts and partition, plus totals.

The committed `models/data/registry.json` is what the zoo, the generator and
the evaluation read to know which datasets exist and which are unseen.
"""

from __future__ import annotations

from typing import Any

from .spec import SPLITS, DatasetSpec

SIDES = ("seen", "unseen")
FAMILY_ORDER = ("glyph-digits", "glyph-letters", "emoji", "clipart", "stamps", "fashion-mnist", "digits-8x8")


def class_identity(spec: DatasetSpec, class_name: str) -> tuple[str, str]:
    """What makes two classes the same: the family and the class name."""
    return spec.family, class_name


def dataset_entry(spec: DatasetSpec, content_hash: str) -> dict[str, Any]:
    return {
        "id": spec.dataset_id,
        "family": spec.family,
        "partition": spec.partition,
        "partition_unit": spec.unit,
        "source_packages": spec.packages,
        "classes": [c.name for c in spec.classes],
        "images": {split: spec.image_count(split) for split in SPLITS},
        "content_hash": content_hash,
    }


def totals(specs: list[DatasetSpec]) -> dict[str, Any]:
    def summary(chosen: list[DatasetSpec]) -> dict[str, Any]:
        classes = {class_identity(s, c.name) for s in chosen for c in s.classes}
        images = {split: sum(s.image_count(split) for s in chosen) for split in SPLITS}
        return {"datasets": len(chosen), "classes": len(classes), "images": images}

    by_partition = {side: summary([s for s in specs if s.partition == side]) for side in SIDES}
    by_family = {
        family: {side: summary([s for s in specs if s.family == family and s.partition == side]) for side in SIDES}
        for family in FAMILY_ORDER
    }
    return {"all": summary(specs), **by_partition, "by_family": by_family}


def build_registry(
    specs: list[DatasetSpec], hashes: dict[str, str], rule: dict[str, Any], config: dict[str, Any], command: str
) -> dict[str, Any]:
    ordered = sorted(specs, key=lambda s: (FAMILY_ORDER.index(s.family), s.dataset_id))
    return {
        "description": "Image-classification datasets built offline from Debian packages; see models/d2nwg/datasets.py.",
        "rebuild_command": command,
        "image_format": {
            "layout": "<cache>/data/<dataset-id>/<class-slug>/<split>-<k>.png with <cache>/data/<dataset-id>/index.json",
            "generated": f"{config['image_size']}x{config['image_size']} RGB "
            "(glyph-digits, glyph-letters, emoji, fashion-mnist, digits-8x8)",
            "folders": f"RGB, longer side at most {config['folder_max_side']} px, aspect kept (clipart, stamps)",
        },
        "config": config,
        "partition_rule": rule,
        "totals": totals(specs),
        "datasets": [dataset_entry(s, hashes[s.dataset_id]) for s in ordered],
    }
