#!/usr/bin/env python
"""camkit against captum, torchcam and pytorch-grad-cam: time, agreement of the maps, memory.

    .venv/bin/python benchmarks/bench_cams.py            # the full run (CPU: about 20 min on 2 cores)
    .venv/bin/python benchmarks/bench_cams.py --quick    # a smoke run (ResNet-18 at 64 px, < 1 min)

Every configuration runs all libraries on the same model, input batch, device and target layer in
one process. After a warm-up, ``--rounds`` rounds each call every library in turn (the order
rotates each round, so they share the machine's noise); a round keeps the minimum of ``--reps``
calls. A time is the median over rounds of those minima; a ratio's spread is the range over
rounds of the per-round ratios. Every timed call returns (N, H, W) maps in [0, 1] (peers that
return low-resolution or unnormalised maps are upsampled bilinearly and min-max normalised inside
the timed call), so the agreement columns compare like with like. Memory is measured per
configuration in a fresh subprocess: on the CPU the peak RSS minus the RSS after the model and
input are loaded (the kernel's high-water mark, reset through /proc/self/clear_refs), on a GPU
``torch.cuda.max_memory_allocated`` minus the memory allocated before the call.

Writes ``results/bench/<device>-<date>.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's Score-CAM draws a progress bar per image
# Sleeping (not spinning) OpenMP workers: on a shared, oversubscribed CPU, spinning threads of a
# 2-thread pool wait on each other and a ResNet-18 forward goes from 60 ms to 270 ms (median).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import camkit
import camkit.metrics

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = 1


# --------------------------------------------------------------------------- models and inputs

def build_model(name: str, device: torch.device) -> tuple[nn.Module, str, str]:
    """(model taking [0, 1] images, target layer name, where the weights come from)."""
    from camkit import zoo

    if name == "resnet18":  # not in the zoo: the Score-CAM model (one forward per channel)
        import torchvision
        from camkit.transforms import Normalize
        net = torchvision.models.resnet18(weights=None)
        model = nn.Sequential(OrderedDict(normalize=Normalize(zoo.IMAGENET_MEAN, zoo.IMAGENET_STD), net=net))
        return model.eval().to(device), "net.layer4", "random"
    if name.startswith("shapes_"):  # the in-repo trained 32 x 32 CNNs
        zm = zoo.load_model(name, device, pretrained=True)
        return zm.model, zm.target_layer, "pretrained"
    if name == "efficientnet_lite0":
        try:
            zm = zoo.load_model(name, device, pretrained=True)
        except zoo.WeightsUnavailableError:
            zm = zoo.load_model(name, device, pretrained=False)
    else:
        zm = zoo.load_model(name, device, pretrained=False)  # random weights: timing only
    return zm.model, zm.target_layer, "random" if zm.weights == "random" else "pretrained"


def make_input(n: int, size: int, device: torch.device, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g).to(device)


def top1(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def finish(maps: Tensor, size) -> Tensor:
    """(N, h, w) → (N, H, W): bilinear upsampling (align_corners=False), then min-max to [0, 1]."""
    maps = maps.float()
    if maps.ndim == 4:
        maps = maps[:, 0]
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return camkit.normalize_maps(maps)


# --------------------------------------------------------------------------- runners

@dataclass
class Runner:
    """One library's way to compute one method: ``setup`` registers its hooks (not timed),
    ``call`` computes (N, H, W) maps in [0, 1] (timed), ``teardown`` removes the hooks."""
    library: str
    method: str
    call: Callable[[], Tensor]
    setup: Callable[[], None] = lambda: None
    teardown: Callable[[], None] = lambda: None
    quantity: Optional[str] = None  # runners with the same quantity compute the same map

    @property
    def key(self) -> str:
        return f"{self.library}:{self.method}"

    def once(self) -> Tensor:
        """Set up, compute the maps once, tear down (the peer's hooks never outlive the call)."""
        self.setup()
        try:
            return self.call()
        finally:
            self.teardown()


def layer_module(model: nn.Module, name: str) -> nn.Module:
    return dict(model.named_modules())[name]


def floor_runners(model: nn.Module, layer: str, x: Tensor, classes: Tensor) -> list[Runner]:
    """The floor: a plain forward, and a forward + backward from the class scores to the layer."""
    module = layer_module(model, layer)

    def forward():
        with torch.no_grad():
            return model(x)

    def forward_backward():
        store = {}
        handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
        try:
            logits = model(x)
            (g,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), store["a"])
        finally:
            handle.remove()
        return g

    def detached_forward_backward():  # the same with no graph below the layer (what camkit does)
        store = {}

        def hook(m, i, o):
            store["a"] = o.detach().requires_grad_(True)
            torch.set_grad_enabled(True)
            return store["a"].clone()

        handle = module.register_forward_hook(hook)
        try:
            with torch.no_grad():
                logits = model(x)
            (g,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), store["a"])
        finally:
            handle.remove()
            torch.set_grad_enabled(True)
        return g

    return [Runner("floor", "forward", forward), Runner("floor", "forward+backward", forward_backward),
            Runner("floor", "forward+backward (detached)", detached_forward_backward)]


def camkit_runner(method: str, model, layer, x, classes, **settings) -> Runner:
    cam = camkit.METHODS[method](model, layer, **settings)
    return Runner("camkit", method, lambda: cam(x, classes), quantity=method)


def captum_gradcam(model, layer, x, classes) -> Runner:
    from captum.attr import LayerGradCam

    explainer = LayerGradCam(model, layer_module(model, layer))
    return Runner("captum", "gradcam", lambda: finish(
        explainer.attribute(x, target=classes, relu_attributions=True), x.shape[-2:]), quantity="gradcam")


class _Hooked:
    """A peer extractor created by ``setup`` and released by ``teardown`` (its hooks live between)."""

    def __init__(self, make, release):
        self.make, self.release, self.obj = make, release, None

    def setup(self):
        self.obj = self.make()

    def teardown(self):
        if self.obj is not None:
            self.release(self.obj)
        self.obj = None


def torchcam_runner(method: str, model, layer, x, classes, **settings) -> Runner:
    import torchcam.methods as tm

    cls = {"gradcam": tm.GradCAM, "gradcam++": tm.GradCAMpp, "smooth-gradcam++": tm.SmoothGradCAMpp,
           "scorecam": tm.ScoreCAM}[method]
    hooked = _Hooked(lambda: cls(model, layer, input_shape=tuple(x.shape[1:]), **settings),
                     lambda e: e.remove_hooks())
    index = classes.tolist()

    def call():
        extractor = hooked.obj
        if method in ("gradcam", "gradcam++"):
            scores = model(x)
            cams = extractor(class_idx=index, scores=scores)[0]
        else:
            with torch.no_grad():
                model(x)  # stores the input (and activations) in the extractor's hooks
            cams = extractor(class_idx=index)[0]
        return finish(cams, x.shape[-2:])

    quantity = {"gradcam": "gradcam", "scorecam": "scorecam-softmax-over-channels"}.get(method)
    return Runner("torchcam", method, call, hooked.setup, hooked.teardown, quantity)


def pgc_runner(method: str, model, layer, x, classes, batch_size: int = 64) -> Runner:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "scorecam": pgc.ScoreCAM}[method]
    module = layer_module(model, layer)

    def make():
        cam = cls(model=model, target_layers=[module])
        cam.batch_size = batch_size
        return cam

    hooked = _Hooked(make, lambda c: c.activations_and_grads.release())
    targets = [ClassifierOutputTarget(int(c)) for c in classes]

    def call():
        return torch.from_numpy(hooked.obj(input_tensor=x, targets=targets)).to(x.device)

    quantity = {"gradcam": "gradcam", "gradcam++": "gradcam++-eq19",
                "scorecam": "scorecam-softmax-over-channels"}.get(method)
    return Runner("pytorch-grad-cam", method, call, hooked.setup, hooked.teardown, quantity)


def single_pass_runners(model, layer, x, classes) -> list[Runner]:
    runners = floor_runners(model, layer, x, classes)
    runners += [camkit_runner("gradcam", model, layer, x, classes), captum_gradcam(model, layer, x, classes),
                torchcam_runner("gradcam", model, layer, x, classes), pgc_runner("gradcam", model, layer, x, classes)]
    pp = camkit_runner("gradcam++", model, layer, x, classes)
    pp.quantity = "gradcam++-eq19"
    runners += [pp, torchcam_runner("gradcam++", model, layer, x, classes),
                pgc_runner("gradcam++", model, layer, x, classes)]
    return runners


def multi_pass_runners(model, layer, x, classes, cfg) -> list[Runner]:
    s, sigma = cfg["smooth_samples"], cfg["smooth_sigma"]
    return [camkit_runner("gradcam", model, layer, x, classes),
            camkit_runner("smooth-gradcam++", model, layer, x, classes, samples=s, sigma=sigma, seed=0),
            torchcam_runner("smooth-gradcam++", model, layer, x, classes, num_samples=s, std=sigma),
            camkit_runner("integrated-gradcam", model, layer, x, classes, steps=cfg["ig_steps"]),
            _renamed(camkit_runner("integrated-gradcam", model, layer, x, classes, steps=cfg["ig_steps"],
                                   internal_batch_size=16), "integrated-gradcam:ibs=16"),
            camkit_runner("expected-gradcam", model, layer, x, classes, samples=cfg["eg_samples"], seed=0)]


def _renamed(runner: Runner, method: str) -> Runner:
    runner.method = method
    return runner


def score_runners(model, layer, x, classes, batch_size) -> list[Runner]:
    return [camkit_runner("scorecam", model, layer, x, classes, internal_batch_size=batch_size),
            torchcam_runner("scorecam", model, layer, x, classes, batch_size=batch_size),
            pgc_runner("scorecam", model, layer, x, classes, batch_size=batch_size)]


# --------------------------------------------------------------------------- timing

def time_interleaved(runners: list[Runner], rounds: int, reps: int, device: torch.device,
                     warmup: int = 1) -> tuple[dict[str, list[float]], dict[str, Tensor]]:
    """Per runner, the minimum over ``reps`` calls in each of ``rounds`` rotated rounds (seconds),
    and the maps of its warm-up call."""
    outputs, times = {}, {r.key: [] for r in runners}
    for r in runners:
        r.setup()
        try:
            for _ in range(warmup):
                outputs[r.key] = r.call()
            sync(device)
        finally:
            r.teardown()
    for k in range(rounds):
        shift = k % len(runners)
        for r in runners[shift:] + runners[:shift]:
            r.setup()
            try:
                best = math.inf
                for _ in range(reps):
                    sync(device)
                    start = time.perf_counter()
                    result = r.call()
                    sync(device)
                    best = min(best, time.perf_counter() - start)
                    outputs.setdefault(r.key, result)  # warmup=0: the maps of the first timed call
            finally:
                r.teardown()
            times[r.key].append(best)
    return times, outputs


def summary(times: list[float], n: int) -> dict:
    med = statistics.median(times)
    return {"ms_per_image": 1e3 * med / n, "ms_per_call": 1e3 * med, "rounds_ms": [1e3 * t for t in times]}


def ratio(times_a: list[float], times_b: list[float]) -> dict:
    per_round = [a / b for a, b in zip(times_a, times_b)]
    return {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round),
            "ratio_of_medians": statistics.median(times_a) / statistics.median(times_b)}


def agreement(a: Tensor, b: Tensor) -> dict:
    """Largest |a − b| over all pixels and the smallest per-image cosine of two (N, H, W) map sets."""
    a, b = a.detach().float().cpu().flatten(1), b.detach().float().cpu().flatten(1)
    cos = F.cosine_similarity(a, b, dim=1, eps=1e-12)
    return {"max_abs_diff": (a - b).abs().max().item(), "cosine_min": cos.min().item(),
            "cosine_mean": cos.mean().item()}


def agreements(runners: list[Runner], outputs: dict[str, Tensor]) -> list[dict]:
    """camkit against each peer of the same method; ``same_quantity`` says whether they should agree."""
    rows = []
    for ours in (r for r in runners if r.library == "camkit"):
        for peer in runners:
            if peer.library in ("camkit", "floor") or peer.method != ours.method:
                continue
            same = peer.quantity is not None and peer.quantity == ours.quantity
            rows.append({"method": ours.method, "a": ours.key, "b": peer.key, "same_quantity": same,
                         **agreement(outputs[ours.key], outputs[peer.key])})
    peers = [r for r in runners if r.library not in ("camkit", "floor")]
    for i, p in enumerate(peers):  # peers against each other where camkit computes something else
        for q in peers[i + 1:]:
            if p.method == q.method and p.quantity and p.quantity == q.quantity and not any(
                    r.library == "camkit" and r.quantity == p.quantity for r in runners):
                rows.append({"method": p.method, "a": p.key, "b": q.key, "same_quantity": True,
                             **agreement(outputs[p.key], outputs[q.key])})
    return rows


# --------------------------------------------------------------------------- memory (fresh subprocess)

def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def memory_worker(spec: dict) -> dict:
    """Run one configuration once in this (fresh) process; report its peak memory above the
    memory held after the model and input were loaded."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    model, layer, _ = build_model(spec["model"], device)
    x = make_input(spec["batch"], spec["size"], device)
    classes = top1(model, x)
    kind, name, settings = spec["kind"], spec["runner"], spec.get("settings", {})
    if kind == "floor":
        runner = {r.method: r for r in floor_runners(model, layer, x, classes)}[name]
    elif kind == "camkit":
        runner = camkit_runner(name, model, layer, x, classes, **settings)
    elif kind == "captum":
        runner = captum_gradcam(model, layer, x, classes)
    elif kind == "torchcam":
        runner = torchcam_runner(name, model, layer, x, classes, **settings)
    else:
        runner = pgc_runner(name, model, layer, x, classes, **settings)
    if spec.get("warmup") == "gradcam":  # warm the kernels up; the peak is reset after it
        camkit_runner("gradcam", model, layer, x, classes).call()
    runner.setup()
    gc.collect()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        runner.call()
        sync(device)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) - before
        return {"peak_mb": peak / 2 ** 20, "seconds": seconds,
                "measure": "cuda.max_memory_allocated - allocated before"}
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS high-water mark
    start = time.perf_counter()
    runner.call()
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM") - before
    return {"peak_mb": peak / 1024, "seconds": seconds, "measure": "VmHWM - VmRSS after load (clear_refs reset)"}


def measure_memory(spec: dict, full: bool = False, env: Optional[dict] = None):
    """Peak MB of one configuration in a fresh process (``full``: the worker's whole answer)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        print(f"  memory worker failed for {spec}: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer if full else answer["peak_mb"]


def kind_of(r: Runner) -> str:
    return {"pytorch-grad-cam": "pgc"}.get(r.library, r.library)


# --------------------------------------------------------------------------- sections

def section_single_pass(cfg, device, log) -> list[dict]:
    out = []
    for model_name in cfg["models"]:
        model, layer, weights = build_model(model_name, device)
        for n in cfg["batches"].get(model_name, cfg["batches"]["default"]):
            x = make_input(n, cfg["size"], device)
            classes = top1(model, x)
            runners = single_pass_runners(model, layer, x, classes)
            reps = cfg["reps"] if n == 1 else cfg["reps_batched"]
            rounds = cfg["rounds"] if n == 1 else cfg["rounds_batched"]
            t0 = time.perf_counter()
            times, outputs = time_interleaved(runners, rounds, reps, device, warmup=1 if n == 1 else cfg["warmup_batched"])
            entry = {"model": model_name, "weights": weights, "layer": layer, "batch": n, "size": cfg["size"],
                     "rounds": rounds, "reps": reps,
                     "results": {k: summary(v, n) for k, v in times.items()},
                     "agreement": agreements(runners, outputs), "ratios": {}, "memory_mb": {}}
            ck = times["camkit:gradcam"]
            fastest = [min(a, b) for a, b in zip(times["captum:gradcam"], times["torchcam:gradcam"])]
            entry["ratios"]["gradcam_vs_fastest_captum_torchcam"] = ratio(ck, fastest)
            entry["ratios"]["gradcam_vs_fastest_peer"] = ratio(ck, [min(a, b) for a, b in zip(
                fastest, times["pytorch-grad-cam:gradcam"])])
            entry["ratios"]["gradcam_vs_pytorch-grad-cam"] = ratio(ck, times["pytorch-grad-cam:gradcam"])
            entry["ratios"]["gradcam_vs_floor_forward_backward"] = ratio(ck, times["floor:forward+backward"])
            entry["ratios"]["gradcam_vs_floor_detached"] = ratio(ck, times["floor:forward+backward (detached)"])
            entry["ratios"]["gradcam_vs_forward"] = ratio(ck, times["floor:forward"])
            fastest_pp = [min(a, b) for a, b in zip(times["torchcam:gradcam++"], times["pytorch-grad-cam:gradcam++"])]
            entry["ratios"]["gradcam++_vs_fastest_peer"] = ratio(times["camkit:gradcam++"], fastest_pp)
            if n in cfg["memory_batches"]:
                for r in runners:
                    if cfg["memory_runners"] and r.key not in cfg["memory_runners"]:
                        continue
                    spec = {"model": model_name, "batch": n, "size": cfg["size"], "device": str(device),
                            "threads": cfg["threads"], "kind": kind_of(r), "runner": r.method}
                    entry["memory_mb"][r.key] = measure_memory(spec)
            log(f"{model_name} batch {n}: {time.perf_counter() - t0:.0f} s")
            out.append(entry)
        del model
        gc.collect()
    return out


def section_multi_pass(cfg, device, log) -> list[dict]:
    out = []
    model, layer, weights = build_model(cfg["multi_model"], device)
    for n in cfg["multi_batches"]:
        x = make_input(n, cfg["size"], device)
        classes = top1(model, x)
        runners = multi_pass_runners(model, layer, x, classes, cfg)
        t0 = time.perf_counter()
        times, outputs = time_interleaved(runners, cfg["multi_rounds"], 1, device)
        entry = {"model": cfg["multi_model"], "weights": weights, "layer": layer, "batch": n, "size": cfg["size"],
                 "rounds": cfg["multi_rounds"], "reps": 1, "settings": {
                     "smooth_samples": cfg["smooth_samples"], "smooth_sigma": cfg["smooth_sigma"],
                     "ig_steps": cfg["ig_steps"], "eg_samples": cfg["eg_samples"],
                     "internal_batch_size": camkit.common.default_internal_batch_size(device)},
                 "results": {k: summary(v, n) for k, v in times.items()},
                 "agreement": agreements(runners, outputs), "ratios": {}, "memory_mb": {}}
        ig, gc_ = times["camkit:integrated-gradcam"], times["camkit:gradcam"]
        entry["ratios"]["ig_over_gradcam_same_batch"] = ratio(ig, gc_)
        entry["ratios"]["smooth-gradcam++_vs_torchcam"] = ratio(times["camkit:smooth-gradcam++"],
                                                               times["torchcam:smooth-gradcam++"])
        log(f"multi-pass {cfg['multi_model']} batch {n}: {time.perf_counter() - t0:.0f} s")
        out.append(entry)
    return out


def section_scorecam(cfg, device, log) -> dict:
    model, layer, weights = build_model("resnet18", device)
    layer = cfg.get("score_layer", layer)
    x = make_input(1, cfg["score_size"], device)
    classes = top1(model, x)
    runners = score_runners(model, layer, x, classes, cfg["score_batch_size"])
    t0 = time.perf_counter()
    times, outputs = time_interleaved(runners, cfg["score_rounds"], 1, device, warmup=0)
    entry = {"model": "resnet18", "weights": weights, "layer": layer, "batch": 1, "size": cfg["score_size"],
             "rounds": cfg["score_rounds"], "internal_batch_size": cfg["score_batch_size"],
             "results": {k: summary(v, 1) for k, v in times.items()},
             "agreement": agreements(runners, outputs), "ratios": {
                 "scorecam_vs_fastest_peer": ratio(times["camkit:scorecam"], [min(a, b) for a, b in zip(
                     times["torchcam:scorecam"], times["pytorch-grad-cam:scorecam"])])}}
    log(f"score-cam resnet18 batch 1: {time.perf_counter() - t0:.0f} s")
    return entry


def section_ig_sweep(cfg, device, log) -> dict:
    """Integrated Grad-CAM time and peak memory against steps m, for each internal_batch_size, one
    fresh subprocess per setting (a warm-up Grad-CAM call, then one timed Integrated Grad-CAM call)."""
    model, layer, weights = build_model(cfg["multi_model"], device)
    x = make_input(1, cfg["sweep_size"], device)
    classes = top1(model, x)
    times, _ = time_interleaved([camkit_runner("gradcam", model, layer, x, classes)], 3, 1, device)
    gradcam = times["camkit:gradcam"]
    t0 = time.perf_counter()
    rows = []
    for ibs in cfg["ig_batch_sizes"]:
        for m in cfg["ig_sweep_steps"]:
            spec = {"model": cfg["multi_model"], "batch": 1, "size": cfg["sweep_size"], "device": str(device),
                    "threads": cfg["threads"], "kind": "camkit", "runner": "integrated-gradcam", "warmup": "gradcam",
                    "settings": {"steps": m, "internal_batch_size": ibs}}
            timed = measure_memory(spec, full=True) or {}
            # a second process for the peak: glibc's fixed mmap threshold returns freed blocks to the
            # OS, so VmHWM follows live memory instead of heap growth (it also slows the call down)
            mem = measure_memory(spec, full=True, env={"MALLOC_MMAP_THRESHOLD_": "65536"}) or {}
            seconds = timed.get("seconds")
            rows.append({"steps": m, "internal_batch_size": ibs, "memory_mb": mem.get("peak_mb"),
                         "memory_mb_default_malloc": timed.get("peak_mb"),
                         "ms_per_call": None if seconds is None else 1e3 * seconds,
                         "over_gradcam": None if seconds is None else seconds / statistics.median(gradcam)})
    log(f"integrated-gradcam sweep: {time.perf_counter() - t0:.0f} s")
    return {"model": cfg["multi_model"], "layer": layer, "batch": 1, "size": cfg["sweep_size"],
            "gradcam_batch1": summary(gradcam, 1), "rows": rows}


def section_multi_target(cfg, device, log) -> list[dict]:
    """K classes of one image: camkit in one call against K calls of each peer."""
    model, layer, weights = build_model(cfg["multi_model"], device)
    x = make_input(1, cfg["size"], device)
    with torch.no_grad():
        ranked = model(x).argsort(1, descending=True)[0]
    out = []
    for k in cfg["ks"]:
        classes = ranked[:k]
        cam = camkit.GradCAM(model, layer)
        runners = [Runner("camkit", "gradcam", lambda c=classes: cam(x, c[None]))]
        runners += k_call_runners(model, layer, x, classes)
        import torchcam.methods as tm
        hooked = _Hooked(lambda: tm.GradCAM(model, layer, input_shape=tuple(x.shape[1:])), lambda e: e.remove_hooks())

        def torchcam_retain(classes=classes):  # one forward, K backward passes (retain_graph)
            scores = model(x)
            return [hooked.obj(class_idx=int(c), scores=scores, retain_graph=True)[0] for c in classes]

        runners.append(Runner("torchcam", f"gradcam 1 forward + {k} backward", torchcam_retain,
                              hooked.setup, hooked.teardown))
        times, _ = time_interleaved(runners, cfg["k_rounds"], 1, device)
        res = {key: summary(v, 1) for key, v in times.items()}
        peer_keys = [f"{lib}:gradcam x{k} calls" for lib in ("captum", "torchcam", "pytorch-grad-cam")]
        fastest = [min(ts) for ts in zip(*(times[p] for p in peer_keys))]
        out.append({"k": k, "results": res, "speedup_vs_fastest_k_calls": ratio(fastest, times["camkit:gradcam"]),
                    "speedup_vs_torchcam_retain_graph": ratio(times[f"torchcam:gradcam 1 forward + {k} backward"],
                                                              times["camkit:gradcam"])})
    log(f"multi-target K={cfg['ks']}: done")
    return out


def k_call_runners(model, layer, x, classes) -> list[Runner]:
    """K separate calls (forward + backward each) of every peer, one class per call; each peer's
    extractor is created once per round (outside the timing), as a user would."""
    from captum.attr import LayerGradCam
    import pytorch_grad_cam as pgc
    import torchcam.methods as tm
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    k, size, index = len(classes), x.shape[-2:], [int(c) for c in classes]
    explainer = LayerGradCam(model, layer_module(model, layer))
    tc = _Hooked(lambda: tm.GradCAM(model, layer, input_shape=tuple(x.shape[1:])), lambda e: e.remove_hooks())
    pg = _Hooked(lambda: pgc.GradCAM(model=model, target_layers=[layer_module(model, layer)]),
                 lambda c: c.activations_and_grads.release())

    def captum_calls():
        return [finish(explainer.attribute(x, target=c, relu_attributions=True), size) for c in index]

    def torchcam_calls():
        return [finish(tc.obj(class_idx=c, scores=model(x))[0], size) for c in index]

    def pgc_calls():
        return [pg.obj(input_tensor=x, targets=[ClassifierOutputTarget(c)]) for c in index]

    return [Runner("captum", f"gradcam x{k} calls", captum_calls),
            Runner("torchcam", f"gradcam x{k} calls", torchcam_calls, tc.setup, tc.teardown),
            Runner("pytorch-grad-cam", f"gradcam x{k} calls", pgc_calls, pg.setup, pg.teardown)]


def plain_curve(model: nn.Module, x: Tensor, maps: Tensor, classes: Tensor, canvas: Tensor, insert: bool,
                n_steps: int) -> Tensor:
    """Insertion/deletion the plain way: for each image, for each step, one forward of one image."""
    n, _, h, w = x.shape
    aucs = []
    with torch.no_grad():
        for i in range(n):
            order = maps[i].flatten().sort(descending=True, stable=True).indices
            start, finish_ = (canvas[i], x[i]) if insert else (x[i], canvas[i])
            ys = []
            for k in range(n_steps + 1):
                current = start.clone().flatten(1)
                count = (k * h * w) // n_steps
                current[:, order[:count]] = finish_.flatten(1)[:, order[:count]]
                p = model(current.reshape(1, 3, h, w)).float().softmax(1)[0, classes[i]]
                ys.append(p)
            ys = torch.stack(ys)
            aucs.append(torch.trapezoid(ys, torch.linspace(0, 1, n_steps + 1, device=x.device)))
    return torch.stack(aucs)


def section_metrics(cfg, device, log) -> dict:
    model, layer, weights = build_model(cfg["metrics_model"], device)
    size = 32 if cfg["metrics_model"].startswith("shapes") else 224
    x = make_input(cfg["metrics_images"], size, device, seed=1)
    classes = top1(model, x)
    maps = camkit.GradCAM(model, layer)(x, classes)
    steps = cfg["metrics_steps"]
    blurred = camkit.metrics.blur(x)
    results = {}

    def batched():
        ins = camkit.metrics.insertion(model, x, maps, classes, steps=steps, internal_batch_size=cfg["metrics_batch"],
                                       progress=False)
        dele = camkit.metrics.deletion(model, x, maps, classes, steps=steps, internal_batch_size=cfg["metrics_batch"],
                                       progress=False)
        return ins.auc, dele.auc

    def plain():
        return (plain_curve(model, x, maps, classes, blurred, True, steps),
                plain_curve(model, x, maps, classes, torch.zeros_like(x), False, steps))

    t0 = time.perf_counter()
    runners = [Runner("camkit", "insertion+deletion batched", batched),
               Runner("plain loop", "insertion+deletion per step", plain)]
    times, outputs = time_interleaved(runners, cfg["metrics_rounds"], 1, device, warmup=0)
    a, b = outputs[runners[0].key], outputs[runners[1].key]
    n = x.shape[0]
    results = {"model": cfg["metrics_model"], "weights": weights, "size": size, "images": n, "steps": steps,
               "batch_size": cfg["metrics_batch"], "rounds": cfg["metrics_rounds"],
               "results": {k: summary(v, n) for k, v in times.items()},
               "speedup": ratio(times[runners[1].key], times[runners[0].key]),
               "auc_max_abs_diff": max((a[0] - b[0]).abs().max().item(), (a[1] - b[1]).abs().max().item()),
               "forwards_per_second_batched": 2 * n * (steps + 1) / statistics.median(times[runners[0].key])}
    log(f"metrics: {time.perf_counter() - t0:.0f} s")
    return results


# --------------------------------------------------------------------------- settings, table, main

def settings(quick: bool, device: torch.device, threads: int) -> dict:
    gpu = device.type == "cuda"
    if quick:  # a smoke run: every section, tiny sizes (ResNet-18 at 64 px); numbers are not the claims
        return dict(quick=True, threads=threads, models=["resnet18"], batches={"default": [1, 2]}, size=64,
                    rounds=2, rounds_batched=2, reps=1, reps_batched=1, warmup_batched=1, memory_batches=[2],
                    memory_runners=["camkit:gradcam", "pytorch-grad-cam:gradcam"],
                    multi_model="resnet18", multi_batches=[1], multi_rounds=1, smooth_samples=2,
                    smooth_sigma=0.15, ig_steps=4, eg_samples=4, score_size=32, score_layer="net.layer3",
                    score_batch_size=64, score_rounds=1, sweep_size=64, ig_sweep_steps=[4, 8], ig_batch_sizes=[4],
                    ks=[1, 3], k_rounds=1, metrics_model="shapes_resnet", metrics_images=4, metrics_steps=10,
                    metrics_batch=64, metrics_rounds=1)
    pairs = ["floor:forward+backward", "camkit:gradcam", "captum:gradcam", "torchcam:gradcam",
             "pytorch-grad-cam:gradcam", "camkit:gradcam++", "torchcam:gradcam++", "pytorch-grad-cam:gradcam++"]
    if gpu:
        return dict(quick=False, threads=threads, models=["resnet50", "vgg16", "efficientnet_lite0"],
                    batches={"default": [1, 8, 32, 128]}, size=224, rounds=7, rounds_batched=5, reps=3,
                    reps_batched=2, warmup_batched=1, memory_batches=[1, 8, 32, 128], memory_runners=[],
                    multi_model="resnet50", multi_batches=[1, 8, 32], multi_rounds=5, smooth_samples=8,
                    smooth_sigma=0.15, ig_steps=50, eg_samples=32, score_size=224, score_batch_size=64,
                    score_rounds=3, sweep_size=224, ig_sweep_steps=[8, 16, 32, 64, 128],
                    ig_batch_sizes=[16, 64, 128], ks=[1, 5, 20], k_rounds=5, metrics_model="resnet50",
                    metrics_images=32, metrics_steps=100, metrics_batch=128, metrics_rounds=3)
    # CPU: sized for ~20 min on 2 free cores. VGG-16 runs at batch 1 only (one batch-8 round of the
    # ten runners costs ~10 min here); Score-CAM (512 forwards per map) and the steps sweep at 112 px.
    return dict(quick=False, threads=threads, models=["resnet50", "vgg16", "efficientnet_lite0"],
                batches={"default": [1, 8], "vgg16": [1]}, size=224, rounds=5, rounds_batched=3, reps=1,
                reps_batched=1, warmup_batched=0, memory_batches=[8], memory_runners=pairs,
                multi_model="resnet50", multi_batches=[1], multi_rounds=2, smooth_samples=8, smooth_sigma=0.15,
                ig_steps=50, eg_samples=16, score_size=112, score_batch_size=64, score_rounds=1, sweep_size=112,
                ig_sweep_steps=[8, 16, 32, 64, 128], ig_batch_sizes=[16, 64], ks=[1, 5, 20], k_rounds=2,
                metrics_model="shapes_resnet", metrics_images=32, metrics_steps=100, metrics_batch=64,
                metrics_rounds=2)


def targets_verdicts(data: dict) -> list[dict]:
    """The issue's targets, each with its measured ratio and met / missed."""
    rows = []
    sp = {(e["model"], e["batch"]): e for e in data["single_pass"]}
    gpu = data["device"]["type"] == "cuda"
    main_batch = 32 if gpu else 8
    e = sp.get(("resnet50", main_batch))
    if e:
        r = e["ratios"]
        key = "gradcam_vs_fastest_peer" if gpu else "gradcam_vs_fastest_captum_torchcam"
        rows.append({"target": f"Grad-CAM <= 1.05 x fastest {'peer' if gpu else 'of captum/torchcam'} "
                               f"(ResNet-50, batch {main_batch})", "limit": 1.05, "measured": r[key]["median"]})
        if not gpu:
            rows.append({"target": "Grad-CAM <= 0.40 x pytorch-grad-cam (ResNet-50, batch 8)", "limit": 0.40,
                         "measured": r["gradcam_vs_pytorch-grad-cam"]["median"]})
            rows.append({"target": "Grad-CAM <= 1.3 x forward + backward-to-the-layer floor (ResNet-50, batch 8)",
                         "limit": 1.3, "measured": r["gradcam_vs_floor_forward_backward"]["median"]})
    mp = {e["batch"]: e for e in data["multi_pass"]}
    if 1 in mp:
        e = mp[1]
        m = e["settings"]["ig_steps"]
        ig = e["results"]["camkit:integrated-gradcam"]["rounds_ms"]
        g1 = e["results"]["camkit:gradcam"]["rounds_ms"]
        if gpu:
            rows.append({"target": f"Integrated Grad-CAM (m = {m}) <= 4.85 x Grad-CAM per image (batch 1)",
                         "limit": 4.85, "measured": statistics.median([a / b for a, b in zip(ig, g1)])})
        else:
            rows.append({"target": f"Integrated Grad-CAM (m = {m}) <= 0.9 m x one batch-1 Grad-CAM call per image"
                                   " (measured: IG time / (m x Grad-CAM time))",
                         "limit": 0.9, "measured": statistics.median([a / (m * b) for a, b in zip(ig, g1)])})
        if "camkit:integrated-gradcam:ibs=16" in e["results"] and not gpu:
            ig16 = e["results"]["camkit:integrated-gradcam:ibs=16"]["rounds_ms"]
            default = e["settings"]["internal_batch_size"]
            rows.append({"target": "(same, with internal_batch_size=16 set explicitly" + (
                                   ", which is the default here)" if default == 16 else f" instead of the default {default})"),
                         "limit": 0.9, "measured": statistics.median([a / (m * b) for a, b in zip(ig16, g1)])})
    sweep = data.get("ig_sweep")
    if sweep and all(r["memory_mb"] is not None for r in sweep["rows"]):
        for ibs in sorted({r["internal_batch_size"] for r in sweep["rows"]}):
            mem = {r["steps"]: r["memory_mb"] for r in sweep["rows"] if r["internal_batch_size"] == ibs}
            steps = sorted(mem)
            at_cap = [s for s in steps if s >= ibs]  # once m >= internal_batch_size, chunks are full
            if len(at_cap) >= 2:
                growth = mem[at_cap[-1]] / max(mem[at_cap[0]], 1e-9)
                rows.append({"target": f"Integrated Grad-CAM peak memory flat in m (internal_batch_size={ibs}: "
                                       f"m={at_cap[0]}..{at_cap[-1]}, ratio of peaks)",
                             "limit": 1.25, "measured": growth})
    kt = {e["k"]: e for e in data["multi_target"]}
    kmax = max(kt) if kt else None
    if kmax:
        rows.append({"target": f"K = {kmax} targets >= 3 x faster than {kmax} separate peer calls",
                     "limit": 3.0, "measured": kt[kmax]["speedup_vs_fastest_k_calls"]["median"], "higher_is_better": True})
    for row in rows:
        better = row.get("higher_is_better", False)
        row["met"] = bool(row["measured"] >= row["limit"] if better else row["measured"] <= row["limit"])
    return rows


def print_table(data: dict) -> None:
    print(f"\n{data['device']['name']} | torch {data['torch']} | {data['threads']} threads | "
          f"load {data['load_before']} -> {data['load_after']}")
    header = f"{'model':<19}{'N':>4}  {'library:method':<42}{'ms/img':>10}{'x fastest peer':>15}{'peak MB':>9}"
    print(header)
    print("-" * len(header))
    for e in data["single_pass"] + data["multi_pass"] + [data["scorecam"]]:
        peers = {k: v for k, v in e["results"].items() if not k.startswith(("camkit", "floor"))}
        for key, res in e["results"].items():
            method = key.split(":", 1)[1]
            same = [v["ms_per_image"] for k, v in peers.items() if k.split(":", 1)[1] == method]
            rel = f"{res['ms_per_image'] / min(same):.2f}" if same else ""
            mem = e.get("memory_mb", {}).get(key)
            print(f"{e['model']:<19}{e['batch']:>4}  {key:<42}{res['ms_per_image']:>10.1f}{rel:>15}"
                  f"{'' if mem is None else f'{mem:.0f}':>9}")
        print()
    print("map agreement (camkit vs peer; same_quantity = should agree):")
    for e in data["single_pass"] + data["multi_pass"] + [data["scorecam"]]:
        for a in e["agreement"]:
            print(f"  {e['model']:<19}{e['batch']:>4}  {a['a']:<28} vs {a['b']:<32} same={str(a['same_quantity']):<5} "
                  f"max|diff|={a['max_abs_diff']:.2e}  cos_min={a['cosine_min']:.4f}")
    print("\nIntegrated Grad-CAM sweep (batch 1):")
    for r in data["ig_sweep"]["rows"]:
        if r["ms_per_call"] is not None:
            print(f"  m={r['steps']:<4} ibs={r['internal_batch_size']:<4} {r['ms_per_call']:>9.0f} ms  "
                  f"{r['over_gradcam']:6.1f} x Grad-CAM  peak {r['memory_mb']:.0f} MB")
    print("\nmulti-target (one image):")
    for e in data["multi_target"]:
        print(f"  K={e['k']:<3} camkit {e['results']['camkit:gradcam']['ms_per_call']:.0f} ms; "
              f"speed-up vs fastest K peer calls {e['speedup_vs_fastest_k_calls']['median']:.1f}x, "
              f"vs torchcam 1 fwd + K bwd {e['speedup_vs_torchcam_retain_graph']['median']:.1f}x")
    m = data["metrics"]
    print(f"\nmetrics: insertion+deletion, {m['steps']} steps, {m['images']} images ({m['model']}, {m['size']} px): "
          f"batched {m['speedup']['median']:.2f}x faster than the per-step loop; |AUC diff| <= {m['auc_max_abs_diff']:.1e}")
    print("\ntargets:")
    for t in data["targets"]:
        print(f"  [{'met' if t['met'] else 'MISSED':>6}] {t['target']}: {t['measured']:.3f} (limit {t['limit']:.3g})")


def machine(device: torch.device) -> dict:
    info = {"type": device.type, "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "platform": platform.platform()}
    try:
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in
                                 Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (StopIteration, OSError):
        pass
    info["name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({info.get('cpu_model', info['cpu'])})"
    return info


def load_average() -> Optional[list[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 1 min on 2 CPU cores)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--out", default=None, help="output JSON (default results/bench/<device>-<date>.json)")
    parser.add_argument("--only", default=None,
                        help="comma-separated sections: single,multi,score,sweep,targets,metrics")
    parser.add_argument("--update", default=None,
                        help="re-run the --only sections and replace them in this existing JSON")
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        print(json.dumps(memory_worker(json.loads(args.memory_worker))))
        return Path()
    device = camkit.report.default_device(args.device)
    threads = camkit.report.set_threads(args.threads)
    cfg = settings(args.quick, device, threads)
    sections = set((args.only or "single,multi,score,sweep,targets,metrics").split(","))
    start = time.perf_counter()
    load_before = load_average()

    def log(msg):
        print(f"[{time.perf_counter() - start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    torch.manual_seed(0)
    data = {"schema": SCHEMA, "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "quick": args.quick, "device": machine(device), "torch": torch.__version__,
            "python": platform.python_version(), "threads": threads, "settings": cfg,
            "versions": versions(), "load_before": load_before, "multi_model": cfg["multi_model"],
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    if args.update:
        data = json.loads(Path(args.update).read_text())
        data.setdefault("updates", []).append({"sections": sorted(sections), "written": datetime.now(
            timezone.utc).isoformat(timespec="seconds"), "load_before": load_before})
    runs = {"single_pass": ("single", section_single_pass, []), "multi_pass": ("multi", section_multi_pass, []),
            "scorecam": ("score", section_scorecam, None), "ig_sweep": ("sweep", section_ig_sweep, None),
            "multi_target": ("targets", section_multi_target, []), "metrics": ("metrics", section_metrics, None)}
    for key, (name, fn, empty) in runs.items():
        if name in sections:
            data[key] = fn(cfg, device, log)
        elif not args.update:
            data[key] = empty
    if args.update:
        data["updates"][-1].update(load_after=load_average(), wall_s=round(time.perf_counter() - start, 1))
    else:
        data["load_after"] = load_average()
        data["wall_s"] = round(time.perf_counter() - start, 1)
    data["targets"] = targets_verdicts(data)
    day = datetime.now().strftime("%Y-%m-%d")
    name = f"{device.type}{'-quick' if args.quick else ''}-{day}.json"
    path = Path(args.out or args.update or ROOT / "results" / "bench" / name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    if sections >= {"single", "multi", "score", "sweep", "targets", "metrics"} or args.update:
        print_table(data)
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} in {data['wall_s']:.0f} s")
    return path


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("camkit", "torch", "torchvision", "captum", "torchcam", "grad-cam", "timm"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


if __name__ == "__main__":
    main()
