"""The seen/unseen partition: a fixed, seeded rule over partition units, written into the registry.

Unseen datasets are never used by the zoo or the generator; they measure
generalisation. Datasets are grouped into partition units so that a class
held by two datasets cannot straddle the split; LINKS join units that must
share a side (look-alike letters across scripts, a pool drawing a benchmark's
classes); benchmark groups are unseen; each family then gets its quota of
unseen units from a seeded ranking. RULE states it in full for the registry.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from .settings import DatasetsConfig
from .spec import DatasetSpec


BENCHMARKS = ("fashion-mnist", "digits-8x8")
QUOTA_ORDER = ("glyph-digits", "glyph-letters", "emoji", "clipart", "stamps")


@dataclasses.dataclass(frozen=True)
class Link:
    units: tuple[str, ...]
    reason: str


LINKS = (
    Link(
        ("glyph:Latin", "glyph:Greek", "glyph:Cyrillic", "glyph:Coptic")
        + ("glyph:Lisu", "glyph:Cherokee", "glyph:Old_Italic", "glyph:Gothic"),
        "homoglyphs: many letters of these scripts look alike (A Α А Ⲁ ꓮ Ꭺ 𐌀 𐌰)",
    ),
    Link(("glyph:Common", "digits-8x8"), "the ASCII digits are the classes of digits-8x8"),
    Link(("emoji:Objects", "fashion-mnist"), "its clothing sub-group draws Fashion-MNIST's garments"),
    Link(("clipart:people", "fashion-mnist"), "people/clothing and people/clothing/hats draw garments"),
    Link(("stamps:clothes", "fashion-mnist"), "garments"),
    Link(("emoji:Symbols", "digits-8x8"), "its keycap sub-group draws the digits 0-9"),
    Link(("stamps:symbols", "digits-8x8"), "symbols/math draws the digits 0-9"),
    Link(("stamps:symbols", "glyph:Latin"), "its alphabets are Latin letters"),
    Link(("emoji:Flags", "clipart:signs_and_symbols"), "both draw national flags"),
)

RULE = (
    "Each dataset has a partition unit: the Unicode script (Scripts.txt) of a glyph set's characters, shared by "
    "glyph-digits and glyph-letters; the emoji group; the top-level clipart or stamps category; or the benchmark "
    "itself. Units joined by a link form a group and always share a side. Groups holding a benchmark "
    "(fashion-mnist, digits-8x8) are unseen. Then for each family in the order glyph-digits, glyph-letters, emoji, "
    "clipart, stamps, the groups holding a unit of that family are ranked by sha256('<seed>:<group>') (group = its "
    "units sorted and joined by '+') and made unseen, lowest first, until at least the family's quota of its units "
    "is unseen. Everything else is seen."
)


def quotas(config: DatasetsConfig) -> dict[str, int]:
    return {
        "glyph-digits": config.unseen_glyph_digit_scripts,
        "glyph-letters": config.unseen_glyph_letter_scripts,
        "emoji": config.unseen_emoji_groups,
        "clipart": config.unseen_clipart_categories,
        "stamps": config.unseen_stamps_categories,
    }


def groups(units: set[str]) -> dict[str, str]:
    """unit → its group's name (member units, sorted, joined by '+'), with LINKS applied transitively."""
    parent = {u: u for u in units | {u for link in LINKS for u in link.units}}

    def root(u: str) -> str:
        while parent[u] != u:
            u = parent[u]
        return u

    for link in LINKS:
        for other in link.units[1:]:
            parent[root(other)] = root(link.units[0])
    members: dict[str, list[str]] = {}
    for u in parent:
        members.setdefault(root(u), []).append(u)
    return {u: "+".join(sorted(members[root(u)])) for u in parent}


def rank(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def assign(specs: list[DatasetSpec], config: DatasetsConfig) -> tuple[list[DatasetSpec], dict[str, Any]]:
    """The specs with `partition` set, and the rule with its outcome for the registry."""
    group_of = groups({s.unit for s in specs})
    unseen_groups = {group_of[b] for b in BENCHMARKS}
    family_quotas = quotas(config)
    for family in QUOTA_ORDER:
        units = sorted({s.unit for s in specs if s.family == family})
        candidates = sorted({group_of[u] for u in units}, key=lambda g: rank(config.partition_seed, g))
        for group in candidates:
            if sum(group_of[u] in unseen_groups for u in units) >= family_quotas[family]:
                break
            unseen_groups.add(group)
        reached = sum(group_of[u] in unseen_groups for u in units)
        if reached < family_quotas[family]:
            raise ValueError(f"{family} has {len(units)} units; cannot make {family_quotas[family]} unseen")
    assigned = [
        dataclasses.replace(s, partition="unseen" if group_of[s.unit] in unseen_groups else "seen") for s in specs
    ]
    present = {s.unit for s in specs}
    rule = {
        "text": RULE,
        "seed": config.partition_seed,
        "quotas": family_quotas,
        "benchmarks": list(BENCHMARKS),
        "links": [{"units": list(link.units), "reason": link.reason} for link in LINKS],
        "unseen_units": sorted(u for u in present if group_of[u] in unseen_groups),
        "seen_units": sorted(u for u in present if group_of[u] not in unseen_groups),
    }
    return assigned, rule
