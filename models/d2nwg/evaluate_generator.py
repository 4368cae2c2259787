"""Evaluate a family's generator against honest baselines; write REPORT.md, metrics.json and plots.

Every generated number is the mean ± standard deviation over the generated
samples (and over splits, tasks or datasets), never the best sample; best-of-N
appears only as an extra column with N stated. What is measured: for heads,
`evaluate_head.py` (seen tasks, unseen datasets zero-shot, few-shot episodes,
fine-tuning, memorisation); for CNNs, `evaluate_cnn.py` (seen tasks,
memorisation, fine-tuning on unseen datasets, diagnostics).

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg evaluate-generator [--config NAME]
    /usr/bin/python3 -m d2nwg evaluate-generator --family cnn [--config NAME]

reads the checkpoint in `release/<family>/` (with `--config NAME`, the one in
`<cache>/generator-NAME/<family>/`, with settings from
`configs/evaluation/NAME.json`, or `configs/cnn-evaluation/NAME.json`) and
writes beside it.
"""

from __future__ import annotations

import argparse
import logging

from .families import FAMILIES, generator_folder

log = logging.getLogger("d2nwg.evaluate_generator")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg evaluate-generator", description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=tuple(FAMILIES), default="head")
    parser.add_argument("--config", default=None, help="override file under configs/residual/ (head training) or configs/cnn-generator/, and configs/evaluation/"
                        " (cnn: configs/cnn-evaluation/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for row in FAMILIES[args.family].evaluate(args.config, generator_folder(args.family, args.config)):
        log.info("%s: %s (target %s)", row["measure"], row["measured"], row["target"])
    return 0
