"""Train the shapes-world CNNs and write lib/camkit/data/assets/shapes_<arch>[_seed<s>].pt.

    python tools/train_shapes.py                         # every architecture and seed (data/README.md)
    python tools/train_shapes.py --arch vgg_fc --seeds 1 2
    python tools/train_shapes.py --arch vgg --epochs 4 --seeds 0

Prints the loss and held-out accuracy per epoch, then one summary line per model. The held-out
set is ``camkit.shapes.shapes(TEST_SIZE, TEST_SEED, variant=TEST_VARIANT)``, never trained on.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from camkit import shapes  # noqa: E402

MAX_TOTAL_BYTES = 5 * 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(shapes.ARCHITECTURES) + ["all"], default="all")
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(shapes.SEEDS),
                        help="training seeds (default: all of camkit.data.shapes_models.SEEDS)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where to write (default: the package assets, lib/camkit/data/assets/)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    archs = sorted(shapes.ARCHITECTURES) if args.arch == "all" else [args.arch]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    written = []
    for arch, seed in [(arch, seed) for arch in archs for seed in args.seeds]:
        model, meta = shapes.train(arch, n_train=args.n_train, epochs=args.epochs, batch_size=args.batch_size,
                                   lr=args.lr, seed=seed, device=device)
        path = shapes.save_trained(model.cpu(), meta, args.data_dir)
        written.append(path)
        print(f"shapes_{arch} seed {seed}: {meta['parameters']} parameters, held-out accuracy {meta['test_accuracy']:.4f} "
              f"on {meta['test']['n']} {meta['test']['variant']} images (seed {meta['test']['seed']}), "
              f"{meta['train_seconds']} s, {path.stat().st_size / 1024:.0f} KiB -> {path}", flush=True)
    total = sum(p.stat().st_size for p in written)
    if total > MAX_TOTAL_BYTES:
        print(f"ERROR: the weights take {total / 2**20:.1f} MiB (> 5 MiB); make the models smaller", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
