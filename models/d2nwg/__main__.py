"""Stage dispatcher: `/usr/bin/python3 -m d2nwg <stage> [options]`.

Each stage is one module with a `main(argv)` function and its usage in the
module docstring.
"""

import importlib
import sys

STAGES = {
    "slice": "d2nwg.export_slice",
    "datasets": "d2nwg.datasets",
    "fixtures": "d2nwg.export_fixtures",
    "features": "d2nwg.features",
    "baselines": "d2nwg.baselines",
    "zoo": "d2nwg.zoo",
    "zoo-report": "d2nwg.zoo_report",
    "zoo-reference": "d2nwg.zoo_reference",
    "train-generator": "d2nwg.train_generator",
    "evaluate-generator": "d2nwg.evaluate_generator",
    "export-generator": "d2nwg.export_generator",
    "quantize-generator": "d2nwg.quantize",
    "class-folder": "d2nwg.class_folder",
    "demo": "d2nwg.demo",
    "latent-map": "d2nwg.latent_map",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["usage: python3 -m d2nwg <stage> [options]", "", "stages:"]
        for name, module in STAGES.items():
            doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()
            lines.append(f"  {name:<12} {doc[0] if doc else ''}")
        print("\n".join(lines))
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"unknown stage {stage!r}; choose one of: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    return importlib.import_module(STAGES[stage]).main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
