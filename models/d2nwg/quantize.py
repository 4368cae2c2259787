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
import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from .config import RELEASE_DIR, cache_dir, load_config
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


def measure_head(folder: Path, precision: str | None, tasks: int, config_name: str | None) -> dict:
    """Generated-head accuracy on seen zoo tasks and on unseen datasets at 20 shots (the evaluation's draws)."""
    from .baselines import normalise
    from .evaluate_generator import EvaluationConfig, accuracies, per_class, settings, support_draws
    from .features import built_datasets, load_features
    from .head_generator import HeadGenerator

    generator = HeadGenerator.load(folder)
    if precision:
        fake_quantize([generator.encoder, generator.denoiser, generator.vae.decoder], precision)
    config = EvaluationConfig(samples=5)
    data_root = cache_dir() / json.loads((folder / "training.json").read_text())["config"]["data_name"]
    unseen = [d for d, partition in built_datasets(data_root) if partition == "unseen"]
    values = []
    for dataset_id in unseen[:: max(1, len(unseen) // tasks)]:
        data = load_features(dataset_id, data_root)
        x = normalise(data.features).astype(np.float32)
        for support, _ in support_draws(data, 20, 1, config.seed):
            query = np.flatnonzero(~data.is_train)
            w, b = generator.generate(per_class(x, data, support), settings(config, 0))
            values.append(float(accuracies(w, b, x[query], data.labels[query]).mean()))
    return {"unseen_20_shot": float(np.mean(values)), "datasets": len(values)}


def measure_cnn(folder: Path, precision: str | None, tasks: int, config_name: str | None) -> dict:
    """What generated CNNs are good for in this release: a fine-tuning start. Per arch, the mean
    accuracy after one epoch of the zoo recipe from generated weights on unseen datasets (the
    evaluation's draws and seeds, so fp32 and a variant differ only by the weight map), and the
    zero-shot accuracy on seen zoo tasks (chance in release 0.1.0, listed for completeness)."""
    from .cnn_generator import CnnGenerator
    from .cnn_tokens import load_cnn_corpus
    from .cnn_zoo import predict
    from .evaluate_cnn import CnnEvaluationConfig, unseen_section
    from .head_generator import SamplingSettings

    generator = CnnGenerator.load(folder)
    if precision:
        fake_quantize([generator.encoder, generator.denoiser, generator.vae.decoder], precision)
    config = json.loads((folder / "training.json").read_text())["config"]
    data_root = cache_dir() / config["data_name"]
    corpus = load_cnn_corpus(cache_dir() / config["zoo_name"] / "cnns", data_root, config["max_models"], tuple(config["archs"]))
    rng = np.random.default_rng(0)
    out = {}
    for arch in config["archs"]:
        values = []
        for t in range(0, len(corpus.task_ids), max(1, len(corpus.task_ids) // tasks)):
            x, y = corpus.images(t, data_root)[2:]
            support = [corpus.features[i] for i in corpus.draw_support(t, 20, rng)]
            nets = generator.generate(arch, support, SamplingSettings(samples=5, steps=50, seed=t))
            values.append(float(np.mean([(predict(arch, p, x).argmax(-1) == y).mean() for p in nets])))
        out[f"seen_{arch}"] = float(np.mean(values))
    evaluation = dataclasses.replace(load_config(CnnEvaluationConfig(), "cnn-evaluation", config_name), finetune_epochs=1)
    finetuned = unseen_section(generator, corpus, evaluation, data_root)
    for arch, summary in finetuned["archs"].items():
        out[f"unseen_finetune_epoch1_{arch}"] = float(summary["generated"]["mean"][1])
        out[f"unseen_finetune_epoch1_{arch}_per_dataset"] = [float(c[1]) for c in summary["generated"]["per_dataset"]]
    out["weights"] = generated_weights(generator, corpus, config["archs"])
    return out


def generated_weights(generator, corpus, archs) -> dict[str, np.ndarray]:
    """Per arch, one generated CNN's flat weights (first task, seed 0): the noise-free comparison of a
    variant with fp32."""
    from .head_generator import SamplingSettings

    support = [corpus.features[i] for i in corpus.draw_support(0, 20, np.random.default_rng(0))]
    out = {}
    for arch in archs:
        net = generator.generate(arch, support, SamplingSettings(samples=1, steps=50, seed=0))[0]
        out[arch] = np.concatenate([v.ravel() for _, v in sorted(net.items())])
    return out


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
    measure = measure_head if family == "head" else measure_cnn
    reference = measure(folder, None, tasks, config_name)
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
        accuracy = measure(folder, precision, tasks, config_name)
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
    parser.add_argument("--family", choices=("head", "cnn"), required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--tasks", type=int, default=12, help="datasets or tasks to measure accuracy on")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    folder = RELEASE_DIR / args.family if args.config is None else cache_dir() / f"generator-{args.config}" / args.family
    result = run(args.family, folder, args.tasks, args.config)
    for precision in ("fp32", *PRECISIONS):
        r = result[precision]
        print(f"{precision}: {sum(r['bytes'].values()) / 1e6:.1f} MB, accuracy {({k: round(v, 4) for k, v in r['accuracy'].items() if isinstance(v, float)})}"
              + (f", ships: {r['ships']}" if precision != "fp32" else ""))
    return 0
