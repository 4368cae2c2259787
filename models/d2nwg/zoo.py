"""Build the model zoos from the seen datasets: classifier heads on backbone features, and small CNNs.

Every job (a chunk of head tasks, or a population of CNNs) runs on
dask.distributed: a LocalCluster on this machine by default, or the cluster
behind `--scheduler ADDRESS` (workers there need this repository and the
cache at the same paths). Jobs write their own shards (`d2nwg/zoo_store.py`)
and are skipped when their shard already exists with the same job hash, so a
build can stop and resume. Unseen datasets are never read.

Usage (from `models/`):

    /usr/bin/python3 -m d2nwg zoo [--config NAME] [--family head|cnn|all] [--workers N] [--scheduler ADDRESS]

Writes `<cache>/zoo/{heads,cnns}/` (with `--config NAME`: `<cache>/zoo-NAME/`),
then the zoo report into `release/zoo/` (release config only).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from . import zoo_store
from .config import RELEASE_DIR, as_dict, cache_dir, load_config
from .data.spec import canonical_json
from .features import built_datasets, features_root_for, load_features
from .cnn_zoo import (BaseRecipe, CnnJob, CnnRecipe, base_meta, cnn_datasets, load_dataset_28, save_base, train_base,
                      train_cnn_job, with_class_means)
from .networks import get_arch, predict
from .head_zoo import HeadRecipe, sample_tasks, train_heads

log = logging.getLogger("d2nwg.zoo")


@dataclasses.dataclass(frozen=True)
class ZooConfig:
    seed: int = 0
    data_name: str = "data"  # <cache>/<data_name>: the datasets (and <cache>/features for their features)
    zoo_name: str = "zoo"
    # Head zoo
    head_tasks: int = 5200
    head_fewshot_share: float = 0.2
    head_tasks_per_job: int = 100
    head_epochs: int = 60
    head_learning_rate: float = 0.05
    head_weight_decay: float = 1e-4
    head_seeds_per_task: int = 2
    head_snapshots: tuple[int, ...] = (50, 60)
    # CNN zoo
    cnn_archs: tuple[str, ...] = ("cnn-s", "cnn-w")
    cnn_seeds: int = 5
    cnn_max_datasets: int = 0  # 0: all
    cnn_min_train_per_class: int = 8
    cnn_models_per_job: int = 40
    # "shared" (issue 14): one base per arch trained on every zoo task at once (`cnn_zoo.train_base`), then
    # each member fine-tuned from it on its task, the last layer first set from class means; its seed draws
    # only the data order. "seeded": each member trained from the init of its seed (release 0.1.0's zoo,
    # whose independent seeds left the generator at chance).
    cnn_start: str = "shared"
    cnn_base_epochs: int = 10
    cnn_base_learning_rate: float = 3e-3
    cnn_epochs: int = 8  # per member: fine-tuning epochs ("shared") or training epochs ("seeded", 30 in 0.1.0)
    cnn_learning_rate: float = 3e-3  # per member ("seeded" trained at 1e-2)
    cnn_snapshots: int = 4  # the last this many epochs of each member are kept

    def head_recipe(self) -> HeadRecipe:
        return HeadRecipe(
            epochs=self.head_epochs,
            learning_rate=self.head_learning_rate,
            weight_decay=self.head_weight_decay,
            seeds_per_task=self.head_seeds_per_task,
            snapshots=tuple(self.head_snapshots),
        )


def job_hash(*parts: object) -> str:
    return hashlib.sha256(canonical_json([repr(p) for p in parts]).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class HeadJob:
    job_id: str
    tasks: tuple  # of head_zoo.Task
    recipe: HeadRecipe
    seed: int
    data_root: str
    features_root: str
    out_dir: str
    job_hash: str


def run_shard(out_dir: str, job_id: str, hash_: str, train) -> dict:
    """Runs `train() → (rows, tensors)` unless the shard exists with this job hash, then writes it."""
    import torch

    torch.set_num_threads(1)  # one dask worker, one core
    out = Path(out_dir)
    if zoo_store.shard_done(out, job_id, hash_):
        return {"job_id": job_id, "skipped": True}
    started = time.monotonic()
    rows, tensors = train()
    zoo_store.write_shard(out, job_id, hash_, rows, tensors)
    return {"job_id": job_id, "skipped": False, "models": len(rows), "wall_s": time.monotonic() - started}


def run_head_job(job: HeadJob) -> dict:
    """Trains one chunk of tasks and writes its shard (runs in a dask worker)."""

    def train() -> tuple[list[dict], dict]:
        dataset_ids = sorted({d for task in job.tasks for d, _ in task.classes})
        features = {d: load_features(d, Path(job.data_root), Path(job.features_root)) for d in dataset_ids}
        rows, tensors = [], {}
        for r in train_heads(list(job.tasks), features, job.recipe, job.seed):
            task = r["task"]
            rows.append({
                "model_id": r["model_id"], "family": task.family, "arch": f"linear-{r['weight'].shape[1]}",
                "task_id": task.task_id, "dataset_ids": sorted({d for d, _ in task.classes}),
                "classes": [f"{d}#{i}" for d, i in task.classes], "class_names": list(task.class_names),
                "fewshot": task.fewshot, "seed": r["seed"], "epoch": r["epoch"],
                "train_accuracy": r["train_accuracy"], "heldout_accuracy": r["heldout_accuracy"],
                "train_images": r["train_images"], "heldout_images": r["heldout_images"], "wall_s": r["wall_s"],
            })
            tensors[r["model_id"]] = {"weight": r["weight"], "bias": r["bias"]}
        return rows, tensors

    return run_shard(job.out_dir, job.job_id, job.job_hash, train)


@dataclasses.dataclass(frozen=True)
class CnnShardJob:
    job: CnnJob
    out_dir: str
    job_hash: str


def run_cnn_job(shard: CnnShardJob) -> dict:
    """Trains one population of CNNs and writes its shard (runs in a dask worker)."""

    def train() -> tuple[list[dict], dict]:
        rows, tensors = [], {}
        for r in train_cnn_job(shard.job):
            rows.append({
                "model_id": r["model_id"], "family": r["dataset_id"].split("/")[0], "arch": r["arch"],
                "task_id": f"{r['dataset_id']}:{','.join(map(str, r['classes']))}", "dataset_ids": [r["dataset_id"]],
                "classes": [f"{r['dataset_id']}#{c}" for c in r["classes"]], "class_names": r["class_names"],
                "fewshot": False, "seed": r["seed"], "epoch": r["epoch"], "train_accuracy": r["train_accuracy"],
                "heldout_accuracy": r["heldout_accuracy"], "train_images": r["train_images"],
                "heldout_images": r["heldout_images"], "wall_s": r["wall_s"],
            })
            tensors[r["model_id"]] = r["tensors"]
        return rows, tensors

    return run_shard(shard.out_dir, shard.job.job_id, shard.job_hash, train)


def zoo_tasks(config: ZooConfig, data_root: Path) -> tuple[list[tuple[str, tuple[int, ...]]], dict[str, tuple[int, str]]]:
    """The (dataset id, 10 class indices) the CNN zoo trains on, and each dataset's (image count, content hash)."""
    pairs = cnn_datasets(data_root, min_train_per_class=config.cnn_min_train_per_class)
    if config.cnn_max_datasets:
        pairs = pairs[: config.cnn_max_datasets]
    sizes = {}
    for dataset_id, _ in pairs:
        index = json.loads(data_root.joinpath(*dataset_id.split("/"), "index.json").read_text())
        sizes[dataset_id] = (len(index["images"]), index["content_hash"])
    return pairs, sizes


def cnn_bases(config: ZooConfig, data_root: Path, out_dir: Path) -> dict[str, tuple[Path, str]]:
    """With the shared start: each arch's base, trained on every zoo task's train images (or kept when its
    file already has this hash), as {arch: (file, hash)}; otherwise {}."""
    if config.cnn_start == "seeded":
        return {}
    if config.cnn_start != "shared":
        raise ValueError(f"cnn_start {config.cnn_start!r} is not one of ('shared', 'seeded')")
    import torch

    torch.set_num_threads(1)
    pairs, sizes = zoo_tasks(config, data_root)
    recipe = BaseRecipe(epochs=config.cnn_base_epochs, learning_rate=config.cnn_base_learning_rate)
    out = {}
    data = None
    for arch in config.cnn_archs:
        hash_ = job_hash("cnn-base", arch, pairs, recipe, config.seed, sorted({h for _, h in sizes.values()}))
        path = out_dir / "bases" / f"{arch}.safetensors"
        if not (path.exists() and base_meta(path).get("hash") == hash_):
            if data is None:
                data = [load_dataset_28(d, data_root, c) for d, c in pairs]
            started = time.monotonic()
            base = train_base(get_arch(arch), [d[0] for d in data], [d[1] for d in data], config.seed, recipe)
            wall_s = time.monotonic() - started
            held_out = []
            for x, y, xq, yq in data:
                tensors = {k: v.numpy() for k, v in with_class_means(get_arch(arch), base, x, y).items()}
                held_out.append(float((predict(arch, tensors, xq).argmax(-1) == yq).mean()))
            save_base(path, base, {"hash": hash_, "arch": arch, "recipe": dataclasses.asdict(recipe), "tasks": len(pairs),
                                   "train_images": sum(len(d[1]) for d in data), "wall_s": wall_s,
                                   "class_means_heldout_accuracy": float(np.mean(held_out))})
            log.info("cnn base %s: %.0f s, held-out accuracy with class-mean last layers %.3f", arch, wall_s, np.mean(held_out))
        out[arch] = (path, hash_)
    return out


def cnn_jobs(config: ZooConfig, data_root: Path, out_dir: Path, bases: dict[str, tuple[Path, str]]) -> list[CnnShardJob]:
    """Populations of `cnn_models_per_job` (dataset, seed) members per architecture, similar sizes together;
    with `bases`, each member fine-tunes its arch's base."""
    pairs, sizes = zoo_tasks(config, data_root)
    recipe = CnnRecipe(epochs=config.cnn_epochs, learning_rate=config.cnn_learning_rate,
                       snapshot_epochs=min(config.cnn_snapshots, config.cnn_epochs))
    members = sorted(((d, c, s) for d, c in pairs for s in range(config.cnn_seeds)), key=lambda m: (sizes[m[0]][0], m))
    jobs = []
    for arch in config.cnn_archs:
        base_file, base_hash = bases.get(arch, (None, None))
        for start in range(0, len(members), config.cnn_models_per_job):
            chunk = tuple(members[start : start + config.cnn_models_per_job])
            job = CnnJob(f"{arch}-{start // config.cnn_models_per_job:04d}", arch, chunk, str(data_root),
                         str(cache_dir()), recipe, None if base_file is None else str(base_file))
            inputs = sorted({sizes[d][1] for d, _, _ in chunk})
            extra = () if base_hash is None else (base_hash,)
            jobs.append(CnnShardJob(job, str(out_dir), job_hash(job.arch, chunk, recipe, inputs, *extra)))
    return jobs


def head_jobs(config: ZooConfig, data_root: Path, features_root: Path, out_dir: Path) -> list[HeadJob]:
    ids = [d for d, partition in built_datasets(data_root) if partition == "seen"]
    datasets = [load_features(d, data_root, features_root) for d in ids]
    tasks = sample_tasks(datasets, config.head_tasks, config.head_fewshot_share, config.seed)
    hashes = {d.dataset_id: json.loads((data_root.joinpath(*d.dataset_id.split("/")) / "index.json").read_text())["content_hash"] for d in datasets}
    recipe = config.head_recipe()
    jobs = []
    for start in range(0, len(tasks), config.head_tasks_per_job):
        chunk = tuple(tasks[start : start + config.head_tasks_per_job])
        job_id = f"{start // config.head_tasks_per_job:04d}"
        inputs = sorted({hashes[d] for t in chunk for d, _ in t.classes})
        jobs.append(HeadJob(job_id, chunk, recipe, config.seed, str(data_root), str(features_root), str(out_dir),
                            job_hash(chunk, recipe, config.seed, inputs)))
    return jobs


@contextlib.contextmanager
def dask_client(workers: int, scheduler: str | None) -> Iterator:
    """A client of the cluster at `scheduler`, or of a LocalCluster of `workers` processes (one thread
    each) that lives as long as the client: one for every job of a run (a cluster costs seconds to start)."""
    from distributed import Client, LocalCluster

    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                  dashboard_address=None, silence_logs=logging.WARNING)
    client = Client(scheduler) if scheduler else Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_jobs(client, function, jobs: list) -> tuple[list[dict], float]:
    """Runs jobs on dask.distributed; returns their summaries and the wall time."""
    from distributed import as_completed

    started = time.monotonic()
    summaries = []
    futures = client.map(function, jobs, pure=False)
    for i, future in enumerate(as_completed(futures), 1):
        summary = future.result()
        summaries.append(summary)
        log.info("job %s done (%d/%d)%s", summary["job_id"], i, len(jobs), " (cached)" if summary["skipped"] else "")
    return summaries, time.monotonic() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m d2nwg zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="override file under configs/zoo/")
    parser.add_argument("--family", choices=("head", "cnn", "all"), default="all")
    parser.add_argument("--scheduler", default=None, help="address of a dask scheduler (default: a LocalCluster)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (one thread each)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    config = load_config(ZooConfig(), "zoo", args.config)
    data_root = cache_dir() / config.data_name
    features_root = features_root_for(data_root)
    zoo_dir = cache_dir() / (config.zoo_name if args.config is None else f"{config.zoo_name}-{args.config}")
    summary_path = zoo_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary["config"] = as_dict(config)
    with dask_client(args.workers, args.scheduler) as client:
        if args.family in ("head", "all"):
            jobs = head_jobs(config, data_root, features_root, zoo_dir / "heads")
            results, wall_s = run_jobs(client, run_head_job, jobs)
            rows = zoo_store.write_table(zoo_dir / "heads")
            summary["heads"] = {"models": len(rows), "tasks": len({r["task_id"] for r in rows}), "wall_s": wall_s,
                                "jobs_trained": sum(not r["skipped"] for r in results)}
        if args.family in ("cnn", "all"):
            jobs = cnn_jobs(config, data_root, zoo_dir / "cnns", cnn_bases(config, data_root, zoo_dir / "cnns"))
            results, wall_s = run_jobs(client, run_cnn_job, jobs)
            rows = zoo_store.write_table(zoo_dir / "cnns")
            summary["cnns"] = {"models": len(rows), "runs": len({(r["task_id"], r["arch"], r["seed"]) for r in rows}),
                               "datasets": len({r["task_id"] for r in rows}), "wall_s": wall_s,
                               "jobs_trained": sum(not r["skipped"] for r in results)}
    zoo_dir.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    return 0
