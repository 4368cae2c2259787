"""Export the runtime slice: a tiny seeded MLP as ONNX plus one recorded input/output pair.

The slice proves the runtime stack (onnxruntime-web on WebGPU and wasm in the
page's worker, onnxruntime-node in Node) before real models exist. The output
recorded here is computed by PyTorch, not by any ONNX runtime, so the
TypeScript side checks every runtime against an independent reference.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg slice [--out DIR] [--config NAME]

Writes `mlp.onnx`, `trace.json` and `manifest.json` into DIR (default:
`release/slice`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from .config import RELEASE_DIR, as_dict, load_config
from .hashing import sha256_file

# The TypeScript side asserts every runtime's output within this of PyTorch's.
MAX_ABS_ERROR = 1e-4


@dataclasses.dataclass(frozen=True)
class SliceConfig:
    seed: int = 20250124
    in_features: int = 16
    hidden: int = 32
    out_features: int = 8
    batch: int = 4
    opset: int = 17


class SliceMlp(nn.Module):
    """Linear → GELU → Linear → softmax: matmul, an elementwise op and a reduction."""

    def __init__(self, config: SliceConfig):
        super().__init__()
        self.hidden = nn.Linear(config.in_features, config.hidden)
        self.out = nn.Linear(config.hidden, config.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in] → [B, out]
        return torch.softmax(self.out(nn.functional.gelu(self.hidden(x))), dim=-1)


def build(config: SliceConfig) -> tuple[SliceMlp, torch.Tensor, torch.Tensor]:
    """The seeded model, its recorded input and PyTorch's output for it."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = SliceMlp(config).eval()
    x = torch.randn(config.batch, config.in_features, generator=generator)
    with torch.no_grad():
        y = model(x)
    return model, x, y


def export(config: SliceConfig, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    model, x, y = build(config)
    graph_path = out_dir / "mlp.onnx"
    torch.onnx.export(
        model,
        (x,),
        str(graph_path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        opset_version=config.opset,
    )
    trace = {
        "input": {"shape": list(x.shape), "data": x.flatten().tolist()},
        "output": {"shape": list(y.shape), "data": y.flatten().tolist()},
    }
    (out_dir / "trace.json").write_text(json.dumps(trace) + "\n")
    manifest = {
        "name": "slice-mlp",
        "graph": {
            "file": graph_path.name,
            "sha256": sha256_file(graph_path),
            "bytes": graph_path.stat().st_size,
            "opset": config.opset,
            "input_name": "x",
            "output_name": "y",
        },
        "trace_file": "trace.json",
        "max_abs_error": MAX_ABS_ERROR,
        "config": as_dict(config),
        "rebuild_command": "cd models && /usr/bin/python3 -m d2nwg slice",
        "torch_version": torch.__version__,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg slice", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RELEASE_DIR / "slice")
    parser.add_argument("--config", default=None, help="override file under configs/slice/")
    args = parser.parse_args(argv)
    config = load_config(SliceConfig(), "slice", args.config)
    manifest = export(config, args.out)
    print(f"wrote {args.out / manifest['graph']['file']} ({manifest['graph']['bytes']} bytes)")
    return 0
