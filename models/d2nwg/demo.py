"""Demo datasets shipped with the web app: seen and unseen datasets, each with a pretrained head to compare.

Each demo is a few classes with `support_per_class` train images (what the
page generates a head from) and up to `query_per_class` test images (held out,
what every head is scored on), plus the head the page calls "pretrained":

  - a seen demo IS a zoo task, picked by a seeded rule among tasks of the named
    families and class counts that are not among the generator's validation
    tasks (so the generator was trained on its heads); its classes are the
    task's classes in the task's row order and pretrained is the task's own zoo
    checkpoint (seed 0, last saved epoch);
  - an unseen demo is a dataset of the unseen side (which neither the zoo nor
    the generator ever read); pretrained is the nearest zoo checkpoint: among
    zoo heads with at least as many classes, the one whose rows best match the
    support class means (the cosine of each row with each class's mean unit
    feature, rows assigned to classes by the Hungarian algorithm maximising the
    summed cosine; the best mean matched cosine wins), keeping only the
    matched rows, in the demo's class order.

Heads follow the app's convention, logits = unit_norm(features) @ weight.T +
bias; zoo shards store heads that way already (`head_zoo.train_heads` folds the
training feature scale into the weights), and the stage checks it: a seen
demo's checkpoint must score the zoo table's held-out accuracy on its task.
Features of the demo images come from the features cache (the same images),
so no backbone runs here. Images are re-encoded without a pixel change: 8-bit
grayscale PNG when all channels are equal, else RGB.

Usage (from `models/`):

    D2NWG_CACHE=<cache> /usr/bin/python3 -m d2nwg demo [--config NAME] [--out DIR] [--registry FILE]

reads `<cache>/data`, `<cache>/features` and `<cache>/zoo/heads` and writes
`public/demo/` (default `--out`): `index.json` (the page's list, parsed with a
strict schema), `measurements.json` (each pretrained head's and nearest class
mean's query accuracy) and per demo `support/<class>/*.png`,
`query/<class>/*.png` and `pretrained.safetensors` (`weight [C, D]`,
`bias [C]`, float32). The same inputs give byte-identical files.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment

from . import safetensors, zoo_store
from .config import DATA_DIR, RELEASE_DIR, REPO_DIR, as_dict, cache_dir, load_config
from .data import store
from .data.spec import canonical_json, derive_seed
from .features import DatasetFeatures, backbone_id, load_features, unit_rows
from .hashing import sha256_bytes, sha256_file

SEEN_KIND = "zoo checkpoint of this task"
NEAREST_KIND = "nearest zoo checkpoint (rows matched to classes)"
FAMILY_TITLES = {
    "glyph-digits": "Glyph digits", "glyph-letters": "Glyph letters", "emoji": "Emoji", "clipart": "Clipart",
    "stamps": "Stamps", "fashion-mnist": "Fashion-MNIST", "digits-8x8": "Digits 8×8",
}


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    seed: int = 0
    data_name: str = "data"  # <cache>/<data_name>: the datasets (and <cache>/features for their features)
    zoo_name: str = "zoo"  # <cache>/<zoo_name>/heads: the head zoo
    support_per_class: int = 5
    query_per_class: int = 6  # at most (a class with fewer test images gives all of them): keeps public/demo/ under 2 MB
    min_query_per_class: int = 5
    # One seen demo per pick: (pool families, fewest classes, most classes) of the zoo task it draws.
    seen_picks: tuple = ((("glyph-digits", "glyph-letters"), 8, 10), (("emoji", "clipart"), 5, 5))
    unseen_datasets: tuple[str, ...] = ("fashion-mnist", "clipart/people")
    max_classes: int = 10  # an unseen dataset with more classes shows a seeded subset


@dataclasses.dataclass
class DemoClass:
    name: str  # folder name, also the name the page shows
    dataset_id: str
    index: int  # class index in its dataset
    support: list[str]  # files in the dataset folder
    query: list[str]


@dataclasses.dataclass
class Demo:
    demo_id: str
    title: str
    side: str
    description: str
    classes: list[DemoClass]
    weight: np.ndarray  # [C, D] for unit-norm features
    bias: np.ndarray  # [C]
    source: str
    kind: str
    extra: dict  # measurements beside the accuracies: the zoo's own numbers, the matched cosine


# ---- images and features --------------------------------------------------------------------------------


def folder_name(name: str) -> str:
    """A class name as a folder name that needs no escaping in a path or a URL."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


def demo_png(source: Path) -> bytes:
    """The image's PNG re-encoded smaller, pixels unchanged: mode L when all channels are equal, else RGB."""
    with Image.open(source) as image:
        if image.mode not in ("RGB", "L"):
            raise ValueError(f"{source}: mode {image.mode}, expected RGB or L (an alpha channel would be dropped)")
        rgb = np.asarray(image.convert("RGB"))
    gray = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[..., 0]) if gray else rgb, "L" if gray else "RGB").save(
        buffer, format="PNG", optimize=True)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as back:
        if not np.array_equal(np.asarray(back.convert("RGB")), rgb):
            raise AssertionError(f"{source}: re-encoding changed its pixels")
    return data


class FeatureCache:
    """Unit-norm features of dataset images by (dataset id, file), each dataset read once."""

    def __init__(self, data_root: Path):
        self.data_root = data_root
        self.datasets: dict[str, DatasetFeatures] = {}
        self.rows: dict[str, dict[str, int]] = {}

    def dataset(self, dataset_id: str) -> DatasetFeatures:
        if dataset_id not in self.datasets:
            data = load_features(dataset_id, self.data_root)
            self.datasets[dataset_id] = data
            self.rows[dataset_id] = {file: i for i, file in enumerate(data.files)}
        return self.datasets[dataset_id]

    def files(self, dataset_id: str, index: int, train: bool) -> list[str]:
        data = self.dataset(dataset_id)
        mask = (data.labels == index) & (data.is_train if train else ~data.is_train)
        return [data.files[i] for i in np.flatnonzero(mask)]

    def features(self, dataset_id: str, files: list[str]) -> np.ndarray:
        data = self.dataset(dataset_id)
        return unit_rows(data.features[[self.rows[dataset_id][f] for f in files]])


def draw_images(cache: FeatureCache, config: DemoConfig, demo_id: str, name: str, dataset_id: str,
                index: int) -> DemoClass:
    """A class's seeded support draw from its train images and query draw from its test images."""
    chosen = {}
    for split, train, count in (("support", True, config.support_per_class), ("query", False, config.query_per_class)):
        files = cache.files(dataset_id, index, train)
        need = config.support_per_class if train else config.min_query_per_class
        if len(files) < need:
            raise ValueError(f"{dataset_id} class {index} has {len(files)} {'train' if train else 'test'} images, "
                             f"a demo needs {need}")
        rng = np.random.default_rng(derive_seed(config.seed, demo_id, dataset_id, index, split))
        chosen[split] = [files[i] for i in sorted(rng.choice(len(files), size=min(count, len(files)), replace=False))]
    return DemoClass(folder_name(name), dataset_id, index, chosen["support"], chosen["query"])


def split_features(cache: FeatureCache, classes: list[DemoClass], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(unit-norm features [N, D], labels [N] in demo class order) of the demo's support or query images."""
    xs = [cache.features(c.dataset_id, getattr(c, split)) for c in classes]
    return np.concatenate(xs), np.concatenate([np.full(len(x), i) for i, x in enumerate(xs)])


def accuracy(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Held-out accuracy of a head on unit-norm features: logits = x @ weight.T + bias."""
    return float(((x @ weight.T + bias).argmax(1) == y).mean())


def class_means(cache: FeatureCache, classes: list[DemoClass]) -> np.ndarray:
    """Mean unit feature of each class's support images [C, D] (not re-normalised: the page's NCM head and
    the nearest-checkpoint match both take cosines, which ignore the length)."""
    x, y = split_features(cache, classes, "support")
    return np.stack([x[y == c].mean(0) for c in range(len(classes))])


# ---- seen demos: zoo tasks ------------------------------------------------------------------------------


def pick_seen_tasks(rows: list[dict], config: DemoConfig, validation: set[str], sides: dict[str, str],
                    cache: FeatureCache) -> list[dict]:
    """Per seen pick, the seed-0 last-epoch zoo row of a seeded choice among the eligible tasks."""
    heads: dict[str, dict] = {}
    for row in rows:
        if row["seed"] == 0 and (row["task_id"] not in heads or row["epoch"] > heads[row["task_id"]]["epoch"]):
            heads[row["task_id"]] = row
    picked: list[dict] = []
    for p, (families, fewest, most) in enumerate(config.seen_picks):
        eligible = []
        for task_id in sorted(heads):
            row = heads[task_id]
            if (row["family"] not in families or not fewest <= len(row["classes"]) <= most or task_id in validation
                    or any(row["task_id"] == q["task_id"] for q in picked)):
                continue
            if any(sides.get(d) != "seen" for d in row["dataset_ids"]):
                raise ValueError(f"zoo task {task_id} reads {row['dataset_ids']}, not all seen in the registry")
            counts = [(len(cache.files(d, int(i), True)), len(cache.files(d, int(i), False)))
                      for d, i in (key.rsplit("#", 1) for key in row["classes"])]
            if all(tr >= config.support_per_class and te >= config.min_query_per_class for tr, te in counts):
                eligible.append(row)
        if not eligible:
            raise ValueError(f"no zoo task of {list(families)} with {fewest}–{most} classes outside the validation tasks")
        rng = np.random.default_rng(derive_seed(config.seed, "seen", p))
        picked.append(eligible[int(rng.integers(len(eligible)))])
    return picked


def seen_demo(row: dict, zoo_dir: Path, cache: FeatureCache, config: DemoConfig, validation_known: bool) -> Demo:
    family = row["family"]
    demo_id = f"seen-{family}"
    keys = [key.rsplit("#", 1) for key in row["classes"]]  # "dataset#index"
    classes = [draw_images(cache, config, demo_id, name, dataset_id, int(index))
               for name, (dataset_id, index) in zip(row["class_names"], keys)]
    checkpoint = zoo_store.load_checkpoint(zoo_dir, row)
    weight, bias = checkpoint["weight"].astype(np.float32), checkpoint["bias"].astype(np.float32)
    # The convention check: on every test image of the task, the checkpoint scores the table's number.
    xs, ys = [], []
    for label, c in enumerate(classes):
        files = cache.files(c.dataset_id, c.index, train=False)
        xs.append(cache.features(c.dataset_id, files))
        ys.append(np.full(len(files), label))
    task_accuracy = accuracy(weight, bias, np.concatenate(xs), np.concatenate(ys))
    if abs(task_accuracy - row["heldout_accuracy"]) > 1e-6:
        raise AssertionError(f"{row['model_id']} scores {task_accuracy} on its task's test images, the zoo table says "
                             f"{row['heldout_accuracy']}: the head is not in the unit-norm convention")
    datasets = sorted({c.dataset_id for c in classes})
    trained = ("a task the generator was trained on (not one of its validation tasks)" if validation_known
               else "a zoo task (no generator checkpoint says whether the generator trained on it)")
    return Demo(
        demo_id=demo_id,
        title=f"{FAMILY_TITLES.get(family, family)}: {len(classes)} classes of a zoo task",
        side="seen",
        description=(f"Zoo task {row['task_id']}, {trained}: {len(classes)} classes from {len(datasets)} seen "
                     f"{family} dataset{'s' if len(datasets) > 1 else ''}, support images from their train split and "
                     f"query images from their test split; pretrained is the zoo's own head for this task."),
        classes=classes,
        weight=weight,
        bias=bias,
        source=f"zoo task {row['task_id']}, seed {row['seed']}, epoch {row['epoch']}",
        kind=SEEN_KIND,
        extra={"zoo_model_id": row["model_id"], "zoo_heldout_accuracy": row["heldout_accuracy"],
               "zoo_heldout_images": row["heldout_images"]},
    )


# ---- unseen demos: nearest zoo checkpoint ---------------------------------------------------------------


def match_rows(weight: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, float]:
    """Rows of `weight` [H, D] assigned to the classes of `means` [C, D] (H ≥ C) maximising the summed cosine:
    (row of each class [C], mean matched cosine)."""
    cosine = unit_rows(weight) @ unit_rows(means).T  # [H, C]
    rows, cols = linear_sum_assignment(cosine, maximize=True)
    order = np.empty(len(cols), dtype=np.int64)
    order[cols] = rows
    return order, float(cosine[order, np.arange(len(order))].mean())


def nearest_checkpoints(rows: list[dict], zoo_dir: Path, targets: list[np.ndarray]) -> list[dict]:
    """For each target (class means [C, D]) the best-matching zoo head with ≥ C classes: its row, matched rows
    in class order, mean matched cosine, weight and bias; ties go to the smaller model id. One pass over shards."""
    best: list[dict | None] = [None] * len(targets)
    by_shard: dict[str, list[dict]] = {}
    for row in rows:
        by_shard.setdefault(row["shard"], []).append(row)
    for shard in sorted(by_shard):
        tensors, _ = safetensors.load(zoo_dir / shard)
        for row in by_shard[shard]:
            weight = tensors[f"{row['model_id']}/weight"]
            for t, means in enumerate(targets):
                if len(row["classes"]) < len(means):
                    continue
                order, score = match_rows(weight, means)
                current = best[t]
                if current is None or (-score, row["model_id"]) < (-current["cosine"], current["row"]["model_id"]):
                    best[t] = {"row": row, "order": order, "cosine": score,
                               "weight": np.array(weight[order], dtype=np.float32),
                               "bias": np.array(tensors[f"{row['model_id']}/bias"][order], dtype=np.float32)}
    missing = [t for t, b in enumerate(best) if b is None]
    if missing:
        raise ValueError(f"no zoo head has {len(targets[missing[0]])} or more classes")
    return best  # type: ignore[return-value]


def unseen_classes(dataset_id: str, cache: FeatureCache, config: DemoConfig) -> list[tuple[str, int]]:
    """(name, index) of the dataset's classes, a seeded subset of `max_classes` when it has more."""
    names = cache.dataset(dataset_id).classes
    keep = np.arange(len(names))
    if len(names) > config.max_classes:
        rng = np.random.default_rng(derive_seed(config.seed, "classes", dataset_id))
        keep = np.sort(rng.choice(len(names), size=config.max_classes, replace=False))
    return [(names[i], int(i)) for i in keep]


def unseen_demo(dataset_id: str, classes: list[DemoClass], nearest: dict, total_classes: int) -> Demo:
    row = nearest["row"]
    family = dataset_id.split("/")[0]
    name = FAMILY_TITLES.get(family, family) + (f": {dataset_id.split('/', 1)[1]}" if "/" in dataset_id else "")
    subset = "" if len(classes) == total_classes else f" ({len(classes)} of its {total_classes} classes)"
    return Demo(
        demo_id=f"unseen-{dataset_id.replace('/', '-')}",
        title=f"{name} (unseen, {len(classes)} classes)",
        side="unseen",
        description=(f"{dataset_id}{subset}, a dataset neither the zoo nor the generator ever read: support images "
                     f"from its train split and query images from its test split; pretrained is the zoo head "
                     f"({len(row['classes'])}-way {row['family']} task) whose rows best match the support class "
                     f"means, one row per class, mean matched cosine {nearest['cosine']:.3f}."),
        classes=classes,
        weight=nearest["weight"],
        bias=nearest["bias"],
        source=(f"zoo task {row['task_id']}, seed {row['seed']}, epoch {row['epoch']} "
                f"(rows {[int(r) for r in nearest['order']]} of its {len(row['classes'])})"),
        kind=NEAREST_KIND,
        extra={"zoo_model_id": row["model_id"], "matched_cosine": round(nearest["cosine"], 6),
               "zoo_class_names": [row["class_names"][r] for r in nearest["order"]]},
    )


# ---- writing --------------------------------------------------------------------------------------------


def write_demo(demo: Demo, folder: Path, data_root: Path, cache: FeatureCache) -> tuple[dict, dict]:
    """Writes the demo's images and pretrained head; returns its index.json entry and its measurements."""
    names = [c.name for c in demo.classes]
    if len(set(names)) != len(names):
        raise ValueError(f"{demo.demo_id}: two classes have the same folder name in {names}")
    paths: dict[str, dict[str, list[str]]] = {"support": {}, "query": {}}
    for c in demo.classes:
        for split in ("support", "query"):
            (folder / split / c.name).mkdir(parents=True, exist_ok=True)
            paths[split][c.name] = []
            for file in getattr(c, split):
                relative = f"{split}/{c.name}/{Path(file).name}"
                (folder / relative).write_bytes(demo_png(store.dataset_dir(data_root, c.dataset_id) / file))
                paths[split][c.name].append(relative)
    head = safetensors.encode({"weight": demo.weight, "bias": demo.bias},
                              {"source": demo.source, "kind": demo.kind, "classes": json.dumps(names)})
    (folder / "pretrained.safetensors").write_bytes(head)
    x, y = split_features(cache, demo.classes, "query")
    pretrained = accuracy(demo.weight, demo.bias, x, y)
    ncm = accuracy(unit_rows(class_means(cache, demo.classes)), np.zeros(len(names), np.float32), x, y)
    entry = {
        "id": demo.demo_id, "title": demo.title, "side": demo.side, "description": demo.description,
        "classes": names, "support": paths["support"], "query": paths["query"],
        "pretrained": {"file": "pretrained.safetensors", "sha256": sha256_bytes(head), "bytes": len(head),
                       "source": demo.source, "kind": demo.kind, "query_accuracy": round(pretrained, 6)},
    }
    measured = {
        "id": demo.demo_id, "classes": len(names), "support_images": sum(map(len, paths["support"].values())),
        "query_images": int(len(y)), "pretrained_query_accuracy": round(pretrained, 6),
        "ncm_query_accuracy": round(ncm, 6), "chance": round(1 / len(names), 6), **demo.extra,
        "bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
    }
    return entry, measured


def inputs_sha256(registry: Path, zoo_dir: Path, config: DemoConfig, validation: list[str]) -> str:
    parts = {"registry_sha256": sha256_file(registry), "zoo_table_sha256": sha256_file(zoo_dir / "models.csv"),
             "config": as_dict(config), "backbone": backbone_id(), "validation_tasks": sorted(validation)}
    return sha256_bytes(canonical_json(parts).encode())


def build(config: DemoConfig, out: Path, registry_path: Path, config_name: str | None = None) -> dict:
    data_root = cache_dir() / config.data_name
    zoo_dir = cache_dir() / config.zoo_name / "heads"
    registry = json.loads(registry_path.read_text())
    sides = {d["id"]: d["partition"] for d in registry["datasets"]}
    training_json = RELEASE_DIR / "head" / "training.json"
    validation = json.loads(training_json.read_text()).get("validation_tasks", []) if training_json.exists() else []
    rows = zoo_store.read_table(zoo_dir)
    cache = FeatureCache(data_root)

    demos = [seen_demo(row, zoo_dir, cache, config, bool(validation))
             for row in pick_seen_tasks(rows, config, set(validation), sides, cache)]
    unseen = []
    for dataset_id in config.unseen_datasets:
        if sides.get(dataset_id) != "unseen":
            raise ValueError(f"{dataset_id} is {sides.get(dataset_id, 'not in the registry')}, not unseen")
        if cache.dataset(dataset_id).partition != "unseen":
            raise ValueError(f"the built {dataset_id} says it is {cache.dataset(dataset_id).partition}")
        demo_id = f"unseen-{dataset_id.replace('/', '-')}"
        classes = [draw_images(cache, config, demo_id, name, dataset_id, index)
                   for name, index in unseen_classes(dataset_id, cache, config)]
        unseen.append((dataset_id, classes))
    nearest = nearest_checkpoints(rows, zoo_dir, [class_means(cache, classes) for _, classes in unseen])
    demos += [unseen_demo(dataset_id, classes, match, len(cache.dataset(dataset_id).classes))
              for (dataset_id, classes), match in zip(unseen, nearest)]

    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    entries, measurements = [], []
    for demo in demos:
        entry, measured = write_demo(demo, partial / demo.demo_id, data_root, cache)
        entries.append(entry)
        measurements.append(measured)
    command = "cd models && D2NWG_CACHE=<cache> /usr/bin/python3 -m d2nwg demo" + (
        f" --config {config_name}" if config_name else "")
    index = {"rebuild_command": command, "inputs_sha256": inputs_sha256(registry_path, zoo_dir, config, validation),
             "demos": entries}
    (partial / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    summary = {"inputs_sha256": index["inputs_sha256"], "demos": measurements}
    (partial / "measurements.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    summary["total_bytes"] = sum(p.stat().st_size for p in partial.rglob("*") if p.is_file())
    if out.exists():
        if any(out.iterdir()) and not (out / "index.json").exists():
            raise FileExistsError(f"{out} holds files but no index.json: not a demo folder, not replacing it")
        shutil.rmtree(out)
    partial.rename(out)
    return summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="override file under configs/demo/")
    parser.add_argument("--out", type=Path, default=REPO_DIR / "public" / "demo")
    parser.add_argument("--registry", type=Path, default=DATA_DIR / "registry.json")
    args = parser.parse_args(argv)
    config = load_config(DemoConfig(), "demo", args.config)
    try:
        summary = build(config, args.out, args.registry, args.config)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0
