"""Describe the built zoos with numbers and pictures: sizes, accuracy distributions, build times.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg zoo-report [--zoo DIR] [--out DIR]

Reads `<cache>/zoo/{heads,cnns}/models.csv` and `summary.json`; writes
`REPORT.md`, `zoo.json` and PNG plots into `release/zoo/` (default).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import zoo_store  # noqa: E402
from .cnn_zoo import base_meta  # noqa: E402
from .config import RELEASE_DIR, cache_dir  # noqa: E402


def stats(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"count": int(a.size), "mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
            "median": float(np.median(a)), "max": float(a.max())}


def grouped(rows: list[dict], key) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return dict(sorted(groups.items()))


def plot_distributions(groups: dict[str, list[dict]], title: str, path: Path, chance: dict[str, float] | None = None) -> None:
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(groups)))
    names = list(groups)
    data = [[r["heldout_accuracy"] for r in groups[n]] for n in names]
    ax.boxplot(data, vert=False, labels=[f"{n} (n={len(d)})" for n, d in zip(names, data)], showfliers=True,
               flierprops={"markersize": 2})
    if chance:
        for i, n in enumerate(names, 1):
            ax.plot([chance[n]], [i], "rx", markersize=6)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("held-out accuracy" + (" (red ×: chance)" if chance else ""))
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def head_section(rows: list[dict], summary: dict, out: Path) -> tuple[list[str], dict]:
    by_family = grouped(rows, lambda r: r["family"])
    chance = {f: float(np.mean([1 / len(r["classes"]) for r in rs])) for f, rs in by_family.items()}
    plot_distributions(by_family, "Head zoo: held-out accuracy per pool family", out / "heads-accuracy.png", chance)
    by_size = grouped(rows, lambda r: f"{len(r['classes']):02d} classes")
    plot_distributions(by_size, "Head zoo: held-out accuracy by class count", out / "heads-accuracy-by-classes.png")
    metrics = {
        "models": len(rows), "tasks": len({r["task_id"] for r in rows}),
        "fewshot_tasks": len({r["task_id"] for r in rows if r["fewshot"]}),
        "classes_used": len({c for r in rows for c in r["classes"]}),
        "heldout_accuracy": stats([r["heldout_accuracy"] for r in rows]),
        "train_accuracy": stats([r["train_accuracy"] for r in rows]),
        "by_family": {f: {"heldout_accuracy": stats([r["heldout_accuracy"] for r in rs]), "chance": chance[f]}
                      for f, rs in by_family.items()},
        "build_wall_s": summary.get("wall_s"),
        "train_wall_s_per_head": float(np.mean([r["wall_s"] for r in rows])),
    }
    lines = [
        "## Head zoo",
        "",
        f"{metrics['models']:,} heads over {metrics['tasks']:,} tasks ({metrics['fewshot_tasks']:,} of them 5-way), "
        f"drawing on {metrics['classes_used']:,} seen classes. Held-out accuracy over all heads: "
        f"{metrics['heldout_accuracy']['mean']:.3f} ± {metrics['heldout_accuracy']['std']:.3f} "
        f"(train {metrics['train_accuracy']['mean']:.3f}).",
        "",
        "| family | heads | held-out accuracy (mean ± std) | min | median | chance |",
        "|---|---|---|---|---|---|",
    ]
    for f, m in metrics["by_family"].items():
        h = m["heldout_accuracy"]
        lines.append(f"| {f} | {h['count']:,} | {h['mean']:.3f} ± {h['std']:.3f} | {h['min']:.3f} | {h['median']:.3f} | {m['chance']:.3f} |")
    lines += ["", "![head accuracy per family](heads-accuracy.png)", "", "![head accuracy by class count](heads-accuracy-by-classes.png)", ""]
    return lines, metrics


def cnn_section(rows: list[dict], summary: dict, config: dict, bases: dict[str, dict], out: Path) -> tuple[list[str], dict]:
    snapshots = len({r["epoch"] for r in rows})
    by_arch_family = grouped(rows, lambda r: f"{r['arch']} / {r['family']}")
    plot_distributions(by_arch_family, f"CNN zoo: held-out accuracy (last {snapshots} epochs)", out / "cnns-accuracy.png",
                       {k: 0.1 for k in by_arch_family})
    metrics = {
        "checkpoints": len(rows), "runs": len({(r["task_id"], r["arch"], r["seed"]) for r in rows}),
        "datasets": len({r["task_id"] for r in rows}),
        "by_arch": {}, "build_wall_s": summary.get("wall_s"), "bases": bases,
    }
    lines = [
        "## CNN zoo",
        "",
        f"{metrics['checkpoints']:,} checkpoints: {metrics['runs']:,} runs (datasets × seeds × architectures) over "
        f"{metrics['datasets']} 10-class seen datasets (whole 10-class datasets and 10-class subsets of larger ones), "
        f"each saved at its last {snapshots} epochs.",
        "",
    ]
    if bases:
        lines += [
            f"Shared start (`cnn_start` \"shared\", issue 14): per architecture one base CNN, trained for "
            f"{config['cnn_base_epochs']} epochs (Adam, learning rate {config['cnn_base_learning_rate']:g}) on the train "
            "images of every zoo task at once, with one 10-way last layer per task; then every member fine-tunes the base on its own "
            f"task for {config['cnn_epochs']} epochs (learning rate {config['cnn_learning_rate']:g}), its last layer first set "
            "from the class means of the base's penultimate features (nearest class mean as a linear layer, "
            "`cnn_zoo.class_mean_layer`). A member's seed draws only its data order and shifts.",
            "",
            "| architecture | base training | train images | held-out accuracy with class-mean last layers (mean over tasks) |",
            "|---|---|---|---|",
        ]
        for arch, meta in bases.items():
            lines.append(f"| {arch} | {meta['wall_s']:.0f} s | {meta['train_images']:,} | "
                         f"{meta['class_means_heldout_accuracy']:.3f} |")
        lines.append("")
    lines += [
        "| architecture | family | checkpoints | held-out accuracy (mean ± std) | min | median | train s / model |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, rs in by_arch_family.items():
        h = stats([r["heldout_accuracy"] for r in rs])
        lines.append(f"| {key.replace(' / ', ' | ')} | {h['count']:,} | {h['mean']:.3f} ± {h['std']:.3f} | {h['min']:.3f} | "
                     f"{h['median']:.3f} | {np.mean([r['wall_s'] for r in rs]):.2f} |")
    for arch, rs in grouped(rows, lambda r: r["arch"]).items():
        metrics["by_arch"][arch] = {"heldout_accuracy": stats([r["heldout_accuracy"] for r in rs]),
                                    "train_wall_s_per_model": float(np.mean([r["wall_s"] for r in rs]))}
    lines += ["", "![cnn accuracy](cnns-accuracy.png)", ""]
    return lines, metrics


def write_report(zoo_dir: Path, out: Path, extra: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    summary = json.loads((zoo_dir / "summary.json").read_text())
    lines = ["# Model zoo report", "", "Rebuild: `make zoo` (or `cd models && /usr/bin/python3 -m d2nwg zoo`), then "
             "`/usr/bin/python3 -m d2nwg zoo-report`. Only seen datasets are used (`models/data/registry.json`).", ""]
    metrics: dict = {"config": summary.get("config")}
    if (zoo_dir / "heads" / "models.csv").exists():
        section, metrics["heads"] = head_section(zoo_store.read_table(zoo_dir / "heads"), summary.get("heads", {}), out)
        lines += section
    if (zoo_dir / "cnns" / "models.csv").exists():
        bases = {p.stem: base_meta(p) for p in sorted((zoo_dir / "cnns" / "bases").glob("*.safetensors"))}
        section, metrics["cnns"] = cnn_section(zoo_store.read_table(zoo_dir / "cnns"), summary.get("cnns", {}),
                                               summary.get("config") or {}, bases, out)
        lines += section
    lines += extra
    (out / "REPORT.md").write_text("\n".join(lines) + "\n")
    (out / "zoo.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg zoo-report", description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=cache_dir() / "zoo")
    parser.add_argument("--out", type=Path, default=RELEASE_DIR / "zoo")
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended to the report")
    args = parser.parse_args(argv)
    extra = args.notes.read_text().splitlines() if args.notes else []
    metrics = write_report(args.zoo, args.out, extra)
    print(json.dumps({k: v for k, v in metrics.items() if k != "config"})[:400])
    return 0
