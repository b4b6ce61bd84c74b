"""Top-1 / top-5 accuracy of the three ImageNet networks on the real-photo corpus, per source package.

For every corpus item with an accepted ImageNet class (:func:`camkit.data.corpus_photos` and,
on white, :func:`camkit.data.cutouts`), each model's top-5 (:func:`camkit.data.corpus.predict`):
an item counts as a top-k hit when any of its top-k classes is in its accepted set. Writes
``results/<profile>/corpus.json`` (``$CAMKIT_RESULTS_DIR`` overrides ``results/``) with the
environment (python, torch, camkit, git commit, device, date) and prints a Markdown table.

    .venv/bin/python tools/corpus_accuracy.py                 # about 10 min on 2 CPU cores
    .venv/bin/python tools/corpus_accuracy.py --models efficientnet_lite0 --profile default
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from camkit.data import corpus
from camkit.data.zoo import load_model
from camkit.report import save_results

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def evaluate(items: list, model: str, internal_batch_size: int) -> dict[str, list[int]]:
    """Per item: [top-1 hit, top-5 hit] (0/1) and the top-1 index, keyed by item name."""
    zm = load_model(model)
    _, top = corpus.predict(items, zm, k=5, internal_batch_size=internal_batch_size)
    return {item.name: [int(t[0] in item.accept), int(any(c in item.accept for c in t)), int(t[0])]
            for item, t in zip(items, top.tolist())}


def table(items: list, results: dict[str, dict[str, list[int]]]) -> dict[str, dict]:
    """Accuracy per source (package; cut-outs apart) and overall, for every model."""
    groups: dict[str, list] = {}
    for item in items:
        key = f"{item.package} (cut-outs on white)" if item.kind == "cutout" else item.package
        groups.setdefault(key, []).append(item)
    photos = [i for i in items if i.kind == "photo"]
    groups["all photos"] = photos
    groups["all items"] = list(items)
    out = {}
    for key, members in groups.items():
        row = {"n": len(members), "units": len({m.unit for m in members})}
        for model, per_item in results.items():
            hits = [per_item[m.name] for m in members]
            row[model] = {"top1": round(sum(h[0] for h in hits) / len(hits), 3),
                          "top5": round(sum(h[1] for h in hits) / len(hits), 3)}
        out[key] = row
    return out


def markdown(rows: dict[str, dict], models: list[str]) -> str:
    short = [m.replace("efficientnet_", "") for m in models]
    lines = ["| Source | n | " + " | ".join(f"{s} top-1 | {s} top-5" for s in short) + " |",
             "|---|---|" + "---|---|" * len(models)]
    for key, row in rows.items():
        cells = " | ".join(f"{row[m]['top1']:.2f} | {row[m]['top5']:.2f}" for m in models)
        lines.append(f"| {key} | {row['n']} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--profile", default="cpu", help="results/<profile>/corpus.json")
    parser.add_argument("--internal-batch-size", type=int, default=16, help="images per forward pass")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    items = corpus.corpus_photos(with_classes=True) + corpus.cutouts(with_classes=True)
    start = time.time()
    results = {}
    for model in args.models:
        results[model] = evaluate(items, model, args.internal_batch_size)
        print(f"corpus_accuracy: {model} done ({time.time() - start:.0f} s)", file=sys.stderr)
    rows = table(items, results)
    kept = {m: sum(r[0] for r in per.values()) for m, per in results.items()}
    save_results("corpus", args.profile, {
        "what": "top-1/top-5 accuracy on corpus items with accepted ImageNet classes (hit: a top-k class in the "
                "accepted set); photos through the model transform, cut-outs on white with a 10 % margin",
        "models": args.models, "n_items": len(items), "seconds": round(time.time() - start),
        "accuracy": rows, "correct_top1": kept,
        "per_item": {name: {m: results[m][name] for m in args.models} for name in [i.name for i in items]},
    })
    print(markdown(rows, args.models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
