"""The generator families the stages know, and what each stage calls for one (`--family head|cnn`).

A family is a module here (`head.py`, `cnn.py`) with the functions of
`Family`: it gathers its own modules' entry points, so the stages
(`train_generator.py`, `evaluate_generator.py`, `export_generator.py`,
`quantize.py`) dispatch through `FAMILIES` and no family imports the other,
or a stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ..config import RELEASE_DIR, cache_dir
from . import cnn, head


class Family(Protocol):
    def train(self, config_name: str | None, folder: Path) -> str:
        """Trains the generator into `folder` with `configs/<its training stage>/<config_name>.json`; returns a
        line for the log."""

    def evaluate(self, config_name: str | None, folder: Path) -> list[dict]:
        """Evaluates the generator of `folder`, writes its report beside it; returns the report's targets."""

    def export(self, folder: Path) -> dict:
        """Writes the graphs, manifest and trace beside the checkpoint; returns the manifest."""

    def load(self, folder: Path) -> Any:
        """The generator of `folder` (its `encoder`, `denoiser` and `vae.decoder` are what the graphs hold)."""

    def measure(self, generator: Any, folder: Path, tasks: int, config_name: str | None) -> dict:
        """Accuracy measures of a generator (quantization compares fp32 with each variant by these)."""


FAMILIES: dict[str, Family] = {"head": head, "cnn": cnn}  # type: ignore[dict-item]


def generator_folder(family: str, config_name: str | None) -> Path:
    """Where a family's generator lives: `release/<family>/`, or `<cache>/generator-<config>/<family>/`."""
    return RELEASE_DIR / family if config_name is None else cache_dir() / f"generator-{config_name}" / family
