"""Export a family's trained generator as three ONNX graphs, a manifest and a parity trace.

The graphs (opset 17): `encoder.onnx` (a dataset's features → class tokens and
a dataset token), `denoiser.onnx` (one DDIM step's ε̂) and `decoder.onnx`
(latents → normalised weight tokens); the scheduler math lives in the engine,
not in a graph. `trace.json` records a run of the factory's sampler on fixture
features, every step included, for the engine's parity tests. Each family's
export says what its graphs take and what its manifest holds: `export_head.py`,
`export_cnn.py` (which also writes one whole generated CNN as ONNX).

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg export-generator [--config NAME]
    /usr/bin/python3 -m d2nwg export-generator --family cnn [--config NAME]

reads the checkpoint in `release/<family>/` (with `--config NAME`, the one under
`<cache>/generator-NAME/<family>/`) and writes the graphs, `manifest.json` and
`trace.json` beside it.
"""

from __future__ import annotations

import argparse

from .families import FAMILIES, generator_folder


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg export-generator", description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=tuple(FAMILIES), default="head")
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    folder = generator_folder(args.family, args.config)
    manifest = FAMILIES[args.family].export(folder)
    sizes = ", ".join(f"{name} {g['bytes'] / 1e6:.1f} MB" for name, g in manifest["graphs"].items())
    print(f"exported to {folder}: {sizes}")
    return 0
