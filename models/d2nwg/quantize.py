"""Reduced-precision variants of a family's exported graphs, measured before they ship.

Weight-only: every float initializer with at least `MIN_ELEMENTS` values is
stored smaller and expanded back to float32 inside the graph, so compute stays
fp32 on every backend (no `shader-f16` needed) and only the download shrinks:
  fp16  the tensor as float16, then Cast(to=float);
  int8  symmetric per-tensor int8 (scale = max|w| / 127), then DequantizeLinear.
Both maps are elementwise, so applying them to the PyTorch parameters
(`fake_quantize`) computes exactly what the variant graphs compute; the
accuracy change is measured that way, on the evaluation's own tasks.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg quantize-generator --family head|cnn [--config NAME]

writes `<graph>.fp16.onnx` and `<graph>.int8.onnx` beside the graphs, a
`quantization.json` with sizes and measured accuracy, and adds the variants
that lose no measurable accuracy to `manifest.json` (`variants`).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from .families import FAMILIES, generator_folder
from .hashing import sha256_file

MIN_ELEMENTS = 4096
PRECISIONS = ("fp16", "int8")


def quantize_array(values: np.ndarray, precision: str) -> np.ndarray:
    """The float32 values a variant graph computes with."""
    if precision == "fp16":
        return values.astype(np.float16).astype(np.float32)
    scale = float(np.abs(values).max()) / 127.0 or 1.0
    return (np.clip(np.round(values / scale), -127, 127) * scale).astype(np.float32)


def quantize_graph(source: Path, target: Path, precision: str) -> int:
    """Writes the variant of one graph; returns how many initializers it shrank."""
    model = onnx.load(str(source))
    graph = model.graph
    kept, nodes, shrunk = [], [], 0
    for init in graph.initializer:
        values = numpy_helper.to_array(init)
        if init.data_type != onnx.TensorProto.FLOAT or values.size < MIN_ELEMENTS:
            kept.append(init)
            continue
        shrunk += 1
        if precision == "fp16":
            kept.append(numpy_helper.from_array(values.astype(np.float16), f"{init.name}__fp16"))
            nodes.append(helper.make_node("Cast", [f"{init.name}__fp16"], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            scale = np.float32(float(np.abs(values).max()) / 127.0 or 1.0)
            q = np.clip(np.round(values / scale), -127, 127).astype(np.int8)
            kept += [numpy_helper.from_array(q, f"{init.name}__int8"),
                     numpy_helper.from_array(np.array(scale, np.float32), f"{init.name}__scale"),
                     numpy_helper.from_array(np.array(0, np.int8), f"{init.name}__zero")]
            nodes.append(helper.make_node("DequantizeLinear", [f"{init.name}__int8", f"{init.name}__scale", f"{init.name}__zero"],
                                          [init.name]))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    rest = copy.deepcopy(list(graph.node))
    del graph.node[:]
    graph.node.extend(nodes + rest)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return shrunk


@torch.no_grad()
def fake_quantize(modules: list[torch.nn.Module], precision: str) -> None:
    """Applies the variant's weight map to every parameter and buffer the graphs would shrink."""
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.dtype == torch.float32 and tensor.numel() >= MIN_ELEMENTS:
                tensor.copy_(torch.from_numpy(quantize_array(tensor.numpy(), precision)))


def measure(family: str, folder: Path, precision: str | None, tasks: int, config_name: str | None) -> dict:
    """The family's accuracy measures of the generator in `folder`, with the variant's weight map applied
    (None: fp32)."""
    generator = FAMILIES[family].load(folder)
    if precision:
        fake_quantize([generator.encoder, generator.denoiser, generator.vae.decoder], precision)
    return FAMILIES[family].measure(generator, folder, tasks, config_name)


def compare(fp32: dict, variant: dict) -> tuple[dict, dict, dict]:
    """(change of every accuracy measure, its noise, relative weight error per arch). Where a measure has
    per-dataset values, its noise is twice the standard error of the paired per-dataset differences:
    fine-tuning amplifies any weight change into a different trajectory, so a change inside that band is
    not a measured loss."""
    change, noise, weight_error = {}, {}, {}
    for k, v in variant.items():
        if isinstance(v, float):
            change[k] = v - fp32[k]
            pairs = variant.get(f"{k}_per_dataset")
            if pairs is not None and len(pairs) > 1:
                d = np.array(pairs) - np.array(fp32[f"{k}_per_dataset"])
                noise[k] = float(2 * d.std(ddof=1) / np.sqrt(len(d)))
    for arch, w in variant.get("weights", {}).items():
        ref = fp32["weights"][arch]
        weight_error[arch] = float(np.linalg.norm(w - ref) / np.linalg.norm(ref))
    return change, noise, weight_error


def public(accuracy: dict) -> dict:
    """What quantization.json keeps of a measurement (the weights only serve the comparison)."""
    return {k: v for k, v in accuracy.items() if k != "weights"}


def run(family: str, folder: Path, tasks: int, config_name: str | None = None) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    reference = measure(family, folder, None, tasks, config_name)
    result = {"min_elements": MIN_ELEMENTS, "fp32": {"accuracy": public(reference),
                                                     "bytes": {k: g["bytes"] for k, g in manifest["graphs"].items()}}}
    variants = {}
    for precision in PRECISIONS:
        files, sizes, shrunk = {}, {}, {}
        for name, graph in manifest["graphs"].items():
            target = folder / graph["file"].replace(".onnx", f".{precision}.onnx")
            shrunk[name] = quantize_graph(folder / graph["file"], target, precision)
            files[name] = {"file": target.name, "sha256": sha256_file(target), "bytes": target.stat().st_size}
            sizes[name] = target.stat().st_size
        accuracy = measure(family, folder, precision, tasks, config_name)
        change, noise, weight_error = compare(reference, accuracy)
        # "No measurable loss": within 0.005 of fp32 on every measure, or within the measure's paired noise.
        ships = all(v >= -max(0.005, noise.get(k, 0.0)) for k, v in change.items())
        result[precision] = {"accuracy": public(accuracy), "change": change, "noise": noise,
                             "relative_weight_error": weight_error, "bytes": sizes, "initializers_shrunk": shrunk,
                             "ships": ships}
        if ships:
            variants[precision] = files
    manifest["variants"] = variants
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (folder / "quantization.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg quantize-generator", description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=tuple(FAMILIES), required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--tasks", type=int, default=12, help="datasets or tasks to measure accuracy on")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    folder = generator_folder(args.family, args.config)
    result = run(args.family, folder, args.tasks, args.config)
    for precision in ("fp32", *PRECISIONS):
        r = result[precision]
        print(f"{precision}: {sum(r['bytes'].values()) / 1e6:.1f} MB, accuracy {({k: round(v, 4) for k, v in r['accuracy'].items() if isinstance(v, float)})}"
              + (f", ships: {r['ships']}" if precision != "fp32" else ""))
    return 0
