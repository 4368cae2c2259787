"""Train a family's generator from its zoo.

head (`residual_head.py`): the seen datasets' within-class statistics (the closed-form reference head
and the basis), a bank of support draws with their residual targets, and an ε-prediction denoiser over
the residual coordinates conditioned on a set encoder over the support images.

cnn (`train_cnn.py`), D2NWG §3 in order:
  1. VAE over weight tokens; reconstruction is checked on zoo tasks it never saw.
  2. Dataset encoder aligned with the frozen VAE latents by a contrastive loss.
  3. Condition bank: the frozen encoder's tokens for several support draws per task.
  4. Denoiser (ε-prediction) with a light condition adapter, on the frozen latents.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg train-generator [--config NAME]
    /usr/bin/python3 -m d2nwg train-generator --family cnn [--config NAME]

Writes the checkpoint into `release/<family>/` (head: `generator.pt`, the models' configs, weights
and statistics; cnn: `vae.pt`, `encoder.pt`, `denoiser.pt` and `generator.json`) and `training.json`
(losses, wall times, input hashes); with `--config NAME` (`configs/residual/NAME.json` for head,
`configs/cnn-generator/NAME.json` for cnn) into `<cache>/generator-NAME/<family>/` instead.
"""

from __future__ import annotations

import argparse
import logging

import torch

from .families import FAMILIES, generator_folder

log = logging.getLogger("d2nwg.train_generator")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg train-generator", description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=tuple(FAMILIES), default="head")
    parser.add_argument("--config", default=None, help="override file under configs/residual/ (head) or configs/cnn-generator/ (cnn)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    folder = generator_folder(args.family, args.config)
    log.info("%s; written to %s", FAMILIES[args.family].train(args.config, folder), folder)
    return 0
