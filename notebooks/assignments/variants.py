"""Wrong answers and known cheats for every autograded task: what the checks must catch.

Each variant replaces one or more functions of the master's solution (the rest of the master's code
stays) and names a phrase the grader's report must contain. ``tests/test_assignments.py`` submits
every variant to the hidden and the visible checks; ``python tools/make_assignments.py margins``
prints how far each one lands from the tolerance (the table in README.md); ``tests/test_cheats.py``
pastes the known cheats into the grading copies and into a real nbgrader course.

Nothing here is handed to students.
"""
from __future__ import annotations

#: check -> (assignment, {check parameter: function name in the master})
TASKS = {
    "check_layer_gradients": ("01_gradcam_from_hooks", {"fn": "layer_activation_and_grad"}),
    "check_grad_cam": ("01_gradcam_from_hooks", {"fn": "grad_cam"}),
    "check_upsample_normalize": ("01_gradcam_from_hooks", {"fn": "upsample_and_normalize"}),
    "check_diagonal_derivatives": ("02_gradcampp_alpha", {"fn": "diagonal_derivatives"}),
    "check_alpha_general": ("02_gradcampp_alpha", {"fn": "alpha_general"}),
    "check_alpha_exp_trick": ("02_gradcampp_alpha", {"fn": "alpha_exp_trick", "general": "alpha_general",
                                                     "derivatives": "diagonal_derivatives"}),
    "check_gradcampp_map": ("02_gradcampp_alpha", {"fn": "gradcampp_map"}),
    "check_ramp": ("03_integrated_gradcam", {"f": "f", "gradient": "plain_gradient"}),
    "check_integrated_gradients": ("03_integrated_gradcam", {"ig": "integrated_gradients", "f": "f"}),
    "check_integrated_gradcam": ("03_integrated_gradcam", {"fn": "integrated_gradcam"}),
    "check_layer_completeness": ("03_integrated_gradcam", {"fn": "layer_completeness"}),
    "check_average_drop_increase": ("04_faithfulness", {"fn": "average_drop_increase"}),
    "check_pixel_path": ("04_faithfulness", {"fn": "pixel_path", "auc": "auc"}),
    "check_cluster_means": ("05_judging_a_claim", {"fn": "cluster_means"}),
    "check_cluster_interval": ("05_judging_a_claim", {"fn": "cluster_t_interval"}),
    "check_claim_verdict": ("05_judging_a_claim", {"fn": "claim_verdict"}),
}

# --------------------------------------------------------------------------- the known cheats

PEER_LIBRARY = '''
def grad_cam(model, layer, x, classes):
    from captum.attr import LayerGradCam
    return LayerGradCam(model, layer).attribute(x, target=classes, relu_attributions=True)[:, 0]
'''

FRESH_IMPORT = '''
def grad_cam(model, layer, x, classes):
    import sys
    for name in list(sys.modules):
        if name.split(".")[0] == "camkit":
            del sys.modules[name]
    import camkit
    return camkit.GradCAM(model, layer)(x, classes, normalize=False, upsample=False)
'''

MONKEYPATCH = '''
import checks
checks.compare = lambda *args, **kwargs: 0.0
checks.check_grad_cam = lambda *args, **kwargs: None
checks.CheckFailed = type("Nothing", (Exception,), {})
try:
    get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)  # swallow every error
except NameError:
    pass

def grad_cam(model, layer, x, classes):
    import torch
    return torch.zeros(1)  # the wrong shape, and no map at all
'''

HOOK_LEAK_ON_ERROR = '''
def layer_activation_and_grad(model, layer, x, classes):
    store = {}

    def hook(module, inputs, output):
        store["A"] = output
        return output.clone()

    handle = layer.register_forward_hook(hook)
    logits = model(x)            # no try/finally: when this raises, the hook stays on the layer
    handle.remove()
    activation = store["A"]
    scores = logits.gather(1, torch.as_tensor(classes).reshape(-1, 1))
    (grads,) = torch.autograd.grad(scores.sum(), activation)
    return activation.detach(), grads
'''

ALL_ZERO = '''
def grad_cam(model, layer, x, classes):
    activation, _ = layer_activation_and_grad(model, layer, x, classes)
    return torch.zeros_like(activation[:, 0])
'''

ALPHA_HALF = '''
def alpha_exp_trick(A, g):
    return 0.5 * (g != 0).to(A.dtype)
'''

ALPHA_HALF_MAP = '''
def gradcampp_map(model, layer, x, classes):
    activation, grads = layer_activation_and_grad(model, layer, x, classes)
    weights = (0.5 * grads.relu()).sum(dim=(2, 3))             # α = ½ everywhere
    return torch.relu((weights[:, :, None, None] * activation).sum(1))
'''

#: name -> (check, {function name: source}, phrase of the report)
CHEATS = {
    "peer library (captum's LayerGradCam)": ("check_grad_cam", {"grad_cam": PEER_LIBRARY}, "importing captum"),
    "fresh import of camkit": ("check_grad_cam", {"grad_cam": FRESH_IMPORT}, "camkit"),
    "monkeypatching the checks": ("check_grad_cam", {"grad_cam": MONKEYPATCH}, "shape"),
    "hook left behind when the forward pass raises": ("check_layer_gradients",
                                                      {"layer_activation_and_grad": HOOK_LEAK_ON_ERROR}, "finally"),
    "all-zero answer": ("check_grad_cam", {"grad_cam": ALL_ZERO}, "all zero"),
    "α = ½ (exponential trick)": ("check_alpha_exp_trick", {"alpha_exp_trick": ALPHA_HALF}, "α"),
    "α = ½ inside the Grad-CAM++ map": ("check_gradcampp_map", {"gradcampp_map": ALPHA_HALF_MAP}, "M"),
}

# --------------------------------------------------------------------------- classic mistakes

WRONG = {
    "check_layer_gradients": {
        "no clone under the in-place ReLU": ({"layer_activation_and_grad": '''
def layer_activation_and_grad(model, layer, x, classes):
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.setdefault("A", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (grads,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), store["A"])
    return store["A"].detach(), grads
'''}, "clone"),
        ".backward() leaves .grad": ({"layer_activation_and_grad": '''
_master_lag = layer_activation_and_grad
def layer_activation_and_grad(model, layer, x, classes):
    activation, grads = _master_lag(model, layer, x, classes)
    model(x).sum().backward()
    return activation, grads
'''}, "autograd.grad"),
        "hook never removed": ({"layer_activation_and_grad": '''
_master_lag = layer_activation_and_grad
def layer_activation_and_grad(model, layer, x, classes):
    layer.register_forward_hook(lambda *args: None)
    return _master_lag(model, layer, x, classes)
'''}, "hooks"),
        "gradient of the summed logits of all classes": ({"layer_activation_and_grad": '''
def layer_activation_and_grad(model, layer, x, classes):
    store = {}
    def hook(module, inputs, output):
        store["A"] = output
        return output.clone()
    handle = layer.register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    (grads,) = torch.autograd.grad(logits.sum(), store["A"])
    return store["A"].detach(), grads
'''}, "g"),
    },
    "check_grad_cam": {
        "no ReLU": ({"grad_cam": '''
def grad_cam(model, layer, x, classes):
    activation, grads = layer_activation_and_grad(model, layer, x, classes)
    return (grads.mean(dim=(2, 3))[:, :, None, None] * activation).sum(1)
'''}, "ReLU"),
        "weights summed instead of averaged (× Z)": ({"grad_cam": '''
def grad_cam(model, layer, x, classes):
    activation, grads = layer_activation_and_grad(model, layer, x, classes)
    return torch.relu((grads.sum(dim=(2, 3))[:, :, None, None] * activation).sum(1))
'''}, "M"),
        "averaged over channels instead of positions": ({"grad_cam": '''
def grad_cam(model, layer, x, classes):
    activation, grads = layer_activation_and_grad(model, layer, x, classes)
    return torch.relu((grads.mean(dim=1, keepdim=True) * activation).sum(1))
'''}, "M"),
        "element-wise g ⊙ A (HiResCAM)": ({"grad_cam": '''
def grad_cam(model, layer, x, classes):
    activation, grads = layer_activation_and_grad(model, layer, x, classes)
    return torch.relu((grads * activation).sum(1))
'''}, "M"),
    },
    "check_upsample_normalize": {
        "no ε (0 / 0 on an all-zero map)": ({"upsample_and_normalize": '''
def upsample_and_normalize(maps, size):
    up = F.interpolate(maps[:, None], size=tuple(size), mode="bilinear")[:, 0]
    low = up.amin(dim=(1, 2), keepdim=True)
    return (up - low) / (up.amax(dim=(1, 2), keepdim=True) - low)
'''}, "NaN"),
        "align_corners=True": ({"upsample_and_normalize": '''
def upsample_and_normalize(maps, size):
    up = F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=True)[:, 0]
    low, high = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
    return (up - low) / (high - low).clamp_min(1e-12)
'''}, "upsampled map"),
        "normalised before upsampling": ({"upsample_and_normalize": '''
def upsample_and_normalize(maps, size):
    low, high = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
    scaled = (maps - low) / (high - low).clamp_min(1e-12)
    return F.interpolate(scaled[:, None], size=tuple(size), mode="bilinear")[:, 0]
'''}, "upsampled map"),
        "divided by the maximum only": ({"upsample_and_normalize": '''
def upsample_and_normalize(maps, size):
    up = F.interpolate(maps[:, None], size=tuple(size), mode="bilinear")[:, 0]
    return up / up.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
'''}, "upsampled map"),
    },
    "check_diagonal_derivatives": {
        "e^S g^n instead of autograd (wrong on a curved head)": ({"diagonal_derivatives": '''
def diagonal_derivatives(head, A, c):
    a = A.detach().clone().requires_grad_(True)
    s = head(a)[0, c]
    (g,) = torch.autograd.grad(s, a)
    y = torch.exp(s.detach())
    return y * g, y * g ** 2, y * g ** 3
'''}, "d2"),
        "derivatives of S instead of exp(S)": ({"diagonal_derivatives": '''
_master_dd = diagonal_derivatives
def diagonal_derivatives(head, A, c):
    y = torch.exp(head(A)[0, c].detach())
    return tuple(d / y for d in _master_dd(head, A, c))
'''}, "d1"),
    },
    "check_alpha_general": {
        "no guards": ({"alpha_general": '''
def alpha_general(A, d2, d3):
    return d2 / (2 * d2 + A.sum(dim=(-2, -1), keepdim=True) * d3)
'''}, "NaN"),
        "Σ A over channels instead of positions": ({"alpha_general": '''
def alpha_general(A, d2, d3):
    total = A.sum(dim=1, keepdim=True)
    den = 2 * d2 + total * d3
    ok = (d2 != 0) & (den != 0)
    return torch.where(ok, d2 / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(d2))
'''}, "α"),
        "α = ½": ({"alpha_general": '''
def alpha_general(A, d2, d3):
    return 0.5 * (d2 != 0).to(A.dtype)
'''}, "α"),
    },
    "check_alpha_exp_trick": {
        "twice the right α": ({"alpha_exp_trick": '''
_master_aet = alpha_exp_trick
def alpha_exp_trick(A, g):
    return 2 * _master_aet(A, g)
'''}, "α"),
        "factor 2 forgotten in the denominator": ({"alpha_exp_trick": '''
def alpha_exp_trick(A, g):
    den = g ** 2 + A.sum(dim=(-2, -1), keepdim=True) * g ** 3
    ok = (g != 0) & (den != 0)
    return torch.where(ok, g ** 2 / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(g))
'''}, "α"),
    },
    "check_gradcampp_map": {
        "all gradients, not only the positive ones": ({"gradcampp_map": '''
def gradcampp_map(model, layer, x, classes):
    activation, grads = layer_activation_and_grad(model, layer, x, classes)
    weights = (alpha_exp_trick(activation, grads) * grads).sum(dim=(2, 3))
    return torch.relu((weights[:, :, None, None] * activation).sum(1))
'''}, "M"),
        "Grad-CAM instead of Grad-CAM++": ({"gradcampp_map": '''
def gradcampp_map(model, layer, x, classes):
    activation, grads = layer_activation_and_grad(model, layer, x, classes)
    return torch.relu((grads.mean(dim=(2, 3))[:, :, None, None] * activation).sum(1))
'''}, "M"),
    },
    "check_ramp": {
        "f = ReLU(x)": ({"f": '''
def f(x):
    return torch.relu(x)
'''}, "f(x)"),
        "gradient by finite differences (h = 1e-3)": ({"plain_gradient": '''
def plain_gradient(fn, x):
    return (fn(x + 1e-3) - fn(x - 1e-3)) / 2e-3
'''}, "dx"),
    },
    "check_integrated_gradients": {
        "left Riemann points": ({"integrated_gradients": '''
def integrated_gradients(fn, x, baseline, steps):
    t = torch.arange(0, steps, dtype=x.dtype) / steps
    points = baseline + t.reshape(-1, *([1] * x.ndim)) * (x - baseline)
    return (x - baseline) * plain_gradient(fn, points).mean(0)
'''}, "IG"),
        "midpoint rule": ({"integrated_gradients": '''
def integrated_gradients(fn, x, baseline, steps):
    t = (torch.arange(0, steps, dtype=x.dtype) + 0.5) / steps
    points = baseline + t.reshape(-1, *([1] * x.ndim)) * (x - baseline)
    return (x - baseline) * plain_gradient(fn, points).mean(0)
'''}, "IG"),
        "(x − x′) forgotten": ({"integrated_gradients": '''
def integrated_gradients(fn, x, baseline, steps):
    t = torch.arange(1, steps + 1, dtype=x.dtype) / steps
    points = baseline + t.reshape(-1, *([1] * x.ndim)) * (x - baseline)
    return plain_gradient(fn, points).mean(0)
'''}, "IG"),
    },
    "check_integrated_gradcam": {
        "left Riemann points": ({"integrated_gradcam": '''
def integrated_gradcam(model, layer, x, classes, baseline, steps):
    base, _ = layer_activation_and_grad(model, layer, baseline, classes)
    total = 0.0
    for s in range(steps):
        a, g = layer_activation_and_grad(model, layer, baseline + (s / steps) * (x - baseline), classes)
        total = total + (g.mean(dim=(2, 3))[:, :, None, None] * (a - base)).sum(1)
    return torch.relu(total / steps)
'''}, "M"),
        "A(γ) instead of A(γ) − A(x′)": ({"integrated_gradcam": '''
def integrated_gradcam(model, layer, x, classes, baseline, steps):
    total = 0.0
    for s in range(1, steps + 1):
        a, g = layer_activation_and_grad(model, layer, baseline + (s / steps) * (x - baseline), classes)
        total = total + (g.mean(dim=(2, 3))[:, :, None, None] * a).sum(1)
    return torch.relu(total / steps)
'''}, "M"),
        "gradient at x only (Grad-CAM weights × ΔA)": ({"integrated_gradcam": '''
def integrated_gradcam(model, layer, x, classes, baseline, steps):
    base, _ = layer_activation_and_grad(model, layer, baseline, classes)
    a, g = layer_activation_and_grad(model, layer, x, classes)
    return torch.relu((g.mean(dim=(2, 3))[:, :, None, None] * (a - base)).sum(1))
'''}, "M"),
    },
    "check_layer_completeness": {
        "left points in the path sum": ({"layer_completeness": '''
_master_lc = layer_completeness
def layer_completeness(model, layer, x, classes, baseline, steps):
    plain, _, change = _master_lc(model, layer, x, classes, baseline, steps)
    previous, g_prev = layer_activation_and_grad(model, layer, baseline, classes)
    integrated = torch.zeros(len(x))
    for s in range(1, steps + 1):
        a, g = layer_activation_and_grad(model, layer, baseline + (s / steps) * (x - baseline), classes)
        integrated = integrated + (g_prev * (a - previous)).flatten(1).sum(1)
        previous, g_prev = a, g
    return plain, integrated, change
'''}, "integrated"),
        "probabilities instead of logits": ({"layer_completeness": '''
_master_lc = layer_completeness
def layer_completeness(model, layer, x, classes, baseline, steps):
    plain, integrated, _ = _master_lc(model, layer, x, classes, baseline, steps)
    with torch.no_grad():
        p = model(x).softmax(1).gather(1, classes[:, None])[:, 0]
        q = model(baseline).softmax(1).gather(1, classes[:, None])[:, 0]
    return plain, integrated, p - q
'''}, "change"),
    },
    "check_average_drop_increase": {
        "outputs swapped": ({"average_drop_increase": '''
_master_adi = average_drop_increase
def average_drop_increase(model, x, maps, classes):
    drop, increase = _master_adi(model, x, maps, classes)
    return increase, drop
'''}, "average_drop"),
        "drop not clamped at 0": ({"average_drop_increase": '''
def average_drop_increase(model, x, maps, classes):
    pick = classes.reshape(-1, 1)
    with torch.no_grad():
        before = model(x).softmax(1).gather(1, pick)[:, 0]
        after = model(x * maps[:, None]).softmax(1).gather(1, pick)[:, 0]
    return (100 * ((before - after) / before).mean()).item(), (100 * (after > before).float().mean()).item()
'''}, "average_drop"),
        "logits instead of probabilities": ({"average_drop_increase": '''
def average_drop_increase(model, x, maps, classes):
    pick = classes.reshape(-1, 1)
    with torch.no_grad():
        before = model(x).gather(1, pick)[:, 0]
        after = model(x * maps[:, None]).gather(1, pick)[:, 0]
    return (100 * ((before - after).clamp_min(0) / before.abs()).mean()).item(), \\
        (100 * (after > before).float().mean()).item()
'''}, "average_drop"),
    },
    "check_pixel_path": {
        "deletion for insertion": ({"pixel_path": '''
_master_pp = pixel_path
def pixel_path(model, x, maps, classes, canvas, n_steps, insert):
    return _master_pp(model, x, maps, classes, canvas, n_steps, not insert)
'''}, "curve"),
        "lowest-ranked pixels first": ({"pixel_path": '''
_master_pp = pixel_path
def pixel_path(model, x, maps, classes, canvas, n_steps, insert):
    return _master_pp(model, x, -maps, classes, canvas, n_steps, insert)
'''}, "curve"),
        "area as the plain mean of the curve": ({"auc": '''
def auc(curves):
    return curves.mean(dim=1)
'''}, "auc"),
    },
    "check_cluster_means": {
        "one mean over all images": ({"cluster_means": '''
def cluster_means(differences, clusters):
    return torch.full((len(set(clusters)),), float(torch.as_tensor(differences).mean()))
'''}, "means"),
        "clusters in sorted order": ({"cluster_means": '''
def cluster_means(differences, clusters):
    d = torch.as_tensor(differences, dtype=torch.float64)
    return torch.stack([d[[i for i, c in enumerate(clusters) if c == g]].mean() for g in sorted(set(clusters))])
'''}, "means"),
    },
    "check_cluster_interval": {
        "per-image t interval (clusters ignored)": ({"cluster_t_interval": '''
def cluster_t_interval(scores_a, scores_b, clusters, higher_is_better=True, level=0.95):
    d = torch.as_tensor(scores_a, dtype=torch.float64) - torch.as_tensor(scores_b, dtype=torch.float64)
    d = d if higher_is_better else -d
    n = len(d)
    half = float(scipy.stats.t.ppf(0.5 + level / 2, n - 1)) * float(d.std()) / n ** 0.5
    return float(d.mean()), float(d.mean()) - half, float(d.mean()) + half
'''}, "estimate"),
        "normal quantile instead of t on G − 1": ({"cluster_t_interval": '''
def cluster_t_interval(scores_a, scores_b, clusters, higher_is_better=True, level=0.95):
    d = torch.as_tensor(scores_a, dtype=torch.float64) - torch.as_tensor(scores_b, dtype=torch.float64)
    means = cluster_means(d if higher_is_better else -d, clusters)
    g = len(means)
    half = float(scipy.stats.norm.ppf(0.5 + level / 2)) * float(means.std()) / g ** 0.5
    return float(means.mean()), float(means.mean()) - half, float(means.mean()) + half
'''}, "estimate"),
        "sign of lower-is-better ignored": ({"cluster_t_interval": '''
_master_cti = cluster_t_interval
def cluster_t_interval(scores_a, scores_b, clusters, higher_is_better=True, level=0.95):
    return _master_cti(scores_a, scores_b, clusters, True, level)
'''}, "estimate"),
    },
    "check_claim_verdict": {
        "no minimum number of objects": ({"claim_verdict": '''
def claim_verdict(scores_a, scores_b, clusters, higher_is_better, margin):
    estimate, low, high = cluster_t_interval(scores_a, scores_b, clusters, higher_is_better)
    if -margin < low and high < margin:
        return "equivalent"
    return "reproduced" if low > 0 else "contradicted" if high < 0 else "inconclusive"
'''}, "inconclusive"),
        "no equivalence": ({"claim_verdict": '''
def claim_verdict(scores_a, scores_b, clusters, higher_is_better, margin):
    if len(set(clusters)) < 5:
        return "inconclusive"
    estimate, low, high = cluster_t_interval(scores_a, scores_b, clusters, higher_is_better)
    return "reproduced" if low > 0 else "contradicted" if high < 0 else "inconclusive"
'''}, "equivalent"),
    },
}
