#!/usr/bin/env python
"""Insertion / deletion evaluation split by image across processes, then merged.

    # one process
    .venv/bin/python benchmarks/eval_sharded.py --images 64 --out-dir build/eval
    # N processes on one machine (gloo on CPU, nccl on GPUs), then rank 0 merges the shards
    .venv/bin/torchrun --standalone --nproc_per_node=N benchmarks/eval_sharded.py --images 64 --out-dir build/eval

Each rank takes its images from a ``DistributedSampler`` (no shuffling; the sampler pads the last
shard by repeating images, the merge drops the repeats), explains each with camkit, scores the
map with :func:`camkit.metrics.insertion` and :func:`camkit.metrics.deletion`, and writes
``shard-<rank>-of-<world>.json``. After a barrier, rank 0 merges the shards into ``merged.json``,
checking that every image is there exactly once (with identical values where a padded image was
scored twice).

Images are evaluated one at a time (a map and its ``steps + 1`` perturbed copies form one model
batch), so an image's numbers do not depend on which rank scored it or with which neighbours: the
merged result equals the one-process result exactly (``tests/test_eval_sharded.py`` checks it).
Threads default to 1 per process, so N ranks use N cores.

Data: ``shapes`` (``camkit.shapes.shapes(n, seed)``, the in-repo trained ``shapes_resnet``'s
world), ``random`` (seeded uniform noise per image, for timing), or ``imagefolder:PATH``
(a torchvision ImageFolder, e.g. the ImageNet validation set, resized by the zoo model's transform).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

import camkit
import camkit.metrics
from camkit import zoo


class IndexedImages(Dataset):
    """(index, image) pairs; image i depends only on i (and the seed), never on the split."""

    def __init__(self, spec: str, n: int, seed: int, size: int, transform=None):
        self.spec, self.n, self.seed, self.size = spec, n, seed, size
        self.folder = None
        if spec == "shapes":
            from camkit import shapes
            self.images = shapes.shapes(n, seed=seed).images
        elif spec.startswith("imagefolder:"):
            from torchvision.datasets import ImageFolder
            self.folder = ImageFolder(spec.split(":", 1)[1], transform=transform)
            self.n = min(n, len(self.folder)) if n > 0 else len(self.folder)
        elif spec != "random":
            raise ValueError(f"--data must be shapes, random or imagefolder:PATH, got {spec!r}")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if self.folder is not None:
            return i, self.folder[i][0]
        if self.spec == "shapes":
            return i, self.images[i]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return i, torch.rand(3, self.size, self.size, generator=g)


def evaluate_indices(model, layer, method: str, dataset: Dataset, indices, steps: int, device) -> dict[int, dict]:
    """{image index: {class, insertion, deletion}} for the given images, one image at a time."""
    cam = camkit.METHODS[method](model, layer)
    out = {}
    for i in indices:
        _, image = dataset[i]
        x = image[None].to(device)
        with torch.no_grad():
            c = int(model(x).argmax(1))
        maps = cam(x, c)
        kw = dict(steps=steps, internal_batch_size=steps + 1, progress=False)
        out[int(i)] = {"class": c,
                       "insertion": camkit.metrics.insertion(model, x, maps, c, **kw).auc.item(),
                       "deletion": camkit.metrics.deletion(model, x, maps, c, **kw).auc.item()}
    return out


def merge(out_dir: Path, world: int, expected: int) -> dict:
    """Merge ``world`` shard files into one result; every image exactly once."""
    per_image: dict[int, dict] = {}
    for rank in range(world):
        shard = json.loads((out_dir / f"shard-{rank}-of-{world}.json").read_text())
        for key, value in shard["images"].items():
            i = int(key)
            if i in per_image and per_image[i] != value:
                raise RuntimeError(f"image {i} was scored twice with different results: {per_image[i]} vs {value}")
            per_image[i] = value
    missing = sorted(set(range(expected)) - set(per_image))
    if missing:
        raise RuntimeError(f"{len(missing)} images are missing from the shards, e.g. {missing[:5]}")
    ordered = {str(i): per_image[i] for i in sorted(per_image)}
    n = len(ordered)
    return {"images": ordered, "n": n, "world": world,
            "insertion_mean": sum(v["insertion"] for v in ordered.values()) / n,
            "deletion_mean": sum(v["deletion"] for v in ordered.values()) / n}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes_resnet", help="a camkit.zoo name (default shapes_resnet)")
    parser.add_argument("--random-weights", action="store_true", help="pretrained=False (timing only)")
    parser.add_argument("--method", default="gradcam", help="a camkit.METHODS name (default gradcam)")
    parser.add_argument("--data", default="shapes", help="shapes | random | imagefolder:PATH")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100, help="insertion/deletion steps (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (each rank uses cuda:LOCAL_RANK)")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world > 1
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    zm = zoo.load_model(args.model, device, pretrained=not args.random_weights)
    dataset = IndexedImages(args.data, args.images, args.seed, zm.input_size, transform=zm.transform)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False, drop_last=False)
    indices = list(sampler)
    start = time.perf_counter()
    results = evaluate_indices(zm.model, zm.target_layer, args.method, dataset, indices, args.steps, device)
    seconds = time.perf_counter() - start
    shard = {"rank": rank, "world": world, "seconds": seconds, "indices": indices, "images": results,
             "settings": vars(args)}
    (out_dir / f"shard-{rank}-of-{world}.json").write_text(json.dumps(shard))
    if distributed:
        dist.barrier()
    merged = {}
    if rank == 0:
        merged = merge(out_dir, world, len(dataset))
        merged["settings"] = {k: v for k, v in vars(args).items() if k != "out_dir"}
        merged["seconds_per_rank"] = [json.loads((out_dir / f"shard-{r}-of-{world}.json").read_text())["seconds"]
                                      for r in range(world)]
        (out_dir / "merged.json").write_text(json.dumps(merged, indent=1) + "\n")
        print(f"merged {merged['n']} images from {world} shard(s): insertion {merged['insertion_mean']:.4f}, "
              f"deletion {merged['deletion_mean']:.4f} -> {out_dir / 'merged.json'}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return merged


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
