"""A generator checkpoint on disk, the same for every family: each model's config and weights.

A checkpoint is a dict: `vae`, `encoder` and `denoiser` each hold
`{"config": dict, "state": state_dict}` (plain dicts and tensors, so loading
depends on no module path), and the rest (`family`, the training config, the
family's weight normalisation, latent scale, noise schedule, validation tasks)
is JSON. `save_checkpoint` writes one `<part>.pt` per model, which keeps each
file small, and `generator.json`; export rebuilds the models from these alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from .config import as_dict
from .denoiser import Denoiser, DenoiserConfig
from .set_encoder import EncoderConfig, SetEncoder

MODEL_PARTS = ("vae", "encoder", "denoiser")


def model_entries(vae: torch.nn.Module, encoder: SetEncoder, denoiser: Denoiser) -> dict:
    """Each model's config and weights, as a checkpoint holds them."""
    return {name: {"config": as_dict(model.config), "state": model.state_dict()}  # type: ignore[arg-type]
            for name, model in (("vae", vae), ("encoder", encoder), ("denoiser", denoiser))}


def save_checkpoint(checkpoint: dict, folder: Path) -> list[Path]:
    """Writes one `<part>.pt` per model (its config and weights) and `generator.json` (everything else)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for part in MODEL_PARTS:
        paths.append(folder / f"{part}.pt")
        torch.save(checkpoint[part], paths[-1])
    rest = {k: v for k, v in checkpoint.items() if k not in MODEL_PARTS}
    paths.append(folder / "generator.json")
    paths[-1].write_text(json.dumps(rest, indent=1) + "\n")
    return paths


def load_checkpoint(folder: Path) -> dict:
    checkpoint = json.loads((folder / "generator.json").read_text())
    for part in MODEL_PARTS:
        checkpoint[part] = torch.load(folder / f"{part}.pt", map_location="cpu")
    return checkpoint


def load_models(checkpoint: dict, make_vae: Callable[[dict], torch.nn.Module]) -> tuple:
    """(vae, encoder, denoiser) rebuilt from a checkpoint's configs and weights, in eval mode;
    `make_vae(config dict)` builds the family's VAE."""
    vae = make_vae(checkpoint["vae"]["config"])
    encoder = SetEncoder(EncoderConfig(**checkpoint["encoder"]["config"]))
    denoiser = Denoiser(DenoiserConfig(**checkpoint["denoiser"]["config"]))
    for model, part in ((vae, "vae"), (encoder, "encoder"), (denoiser, "denoiser")):
        model.load_state_dict(checkpoint[part]["state"])
        model.eval()
    return vae, encoder, denoiser
