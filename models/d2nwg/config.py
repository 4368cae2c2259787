"""Stage settings: a dataclass per stage, changed only by named override files.

An override file is JSON under `models/configs/<stage>/<name>.json`; a key the
dataclass does not have is an error, so a typo cannot silently change nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, TypeVar

MODELS_DIR = Path(__file__).resolve().parent.parent
CONFIG_DIR = MODELS_DIR / "configs"
RELEASE_DIR = MODELS_DIR / "release"
DATA_DIR = MODELS_DIR / "data"  # committed dataset registry and contact sheet
REPO_DIR = MODELS_DIR.parent

T = TypeVar("T")


def apply_overrides(config: T, overrides: dict[str, Any]) -> T:
    """Returns a copy of `config` with `overrides`; unknown keys raise."""
    known = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise KeyError(f"unknown config keys {unknown}; known keys are {sorted(known)}")
    return dataclasses.replace(config, **overrides)  # type: ignore[type-var]


def load_config(default: T, stage: str, name: str | None) -> T:
    """The stage's default settings, changed by `configs/<stage>/<name>.json` when a name is given."""
    if name is None:
        return default
    path = CONFIG_DIR / stage / f"{name}.json"
    if not path.exists():
        choices = sorted(p.stem for p in (CONFIG_DIR / stage).glob("*.json"))
        raise FileNotFoundError(f"no config {name!r} for stage {stage!r}; choose one of {choices}")
    return apply_overrides(default, json.loads(path.read_text()))


def cache_dir() -> Path:
    """Where built artifacts too big to commit live: $D2NWG_CACHE, else `.cache/` at the repository root."""
    return Path(os.environ.get("D2NWG_CACHE") or REPO_DIR / ".cache")


def as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """The inverse of `as_dict` after a JSON round trip: lists become the tuples the dataclass holds."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
