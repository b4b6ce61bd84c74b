"""Small helpers the report's notebooks share: devices, parameter checks, result files."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

PROFILES = ("default", "cpu", "full")


def default_device(device: Optional[str] = None) -> torch.device:
    """``device`` if given ("cpu", "cuda", "cuda:1", or "auto"/None), else CUDA when present, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but no CUDA device is available; use 'cpu' or 'auto'")
    return resolved


def parameter_rules(values: Mapping[str, Any], rules: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The rule of every parameter: its type from the parameters cell's annotations
    (``steps: int = 50`` puts ``int`` in the notebook's ``__annotations__``), merged with ``rules``
    (``{"steps": {"min": 1}}``, ``{"model": {"choices": [...]}}``); a rule given in full wins."""
    annotations = {name: kind for name, kind in dict(values.get("__annotations__", {})).items()
                   if not name.startswith("_") and isinstance(kind, (type, tuple))}
    merged: dict[str, Any] = dict(annotations)
    for name, rule in (rules or {}).items():
        if isinstance(rule, dict) and not {"type", "choices", "keys"} & set(rule) and name in annotations:
            rule = {"type": annotations[name], **rule}
        merged[name] = rule
    return merged


def check_parameters(values: Mapping[str, Any], spec: Optional[Mapping[str, Any]] = None) -> None:
    """Validate a notebook's papermill parameters and fail at the top of the notebook.

    The types come from the annotations of the parameters cell (``steps: int = 50``), so the check
    cell only adds what a type cannot say: ``check_parameters(globals(), {"steps": {"min": 1}})``.
    ``spec`` maps a name to a type (or tuple of types), or to allowed values wrapped as
    ``{"choices": [...]}``, or to ``{"type": t, "min": lo, "max": hi}`` (``type`` defaults to the
    annotation), or, for a dict of optional overrides, to ``{"keys": {key: rule}}`` (unknown keys are
    an error, each given key is checked against its rule).
    The ``profile`` parameter must be one of :data:`PROFILES`; ``profile="full"`` needs a GPU
    and stops at once without one.
    """
    spec = parameter_rules(values, spec)
    for name, rule in spec.items():
        if name not in values:
            raise ValueError(f"parameter {name!r} is missing")
        value = values[name]
        if isinstance(rule, dict) and "keys" in rule:
            if not isinstance(value, Mapping):
                raise TypeError(f"parameter {name} must be a dict, got {type(value).__name__} {value!r}")
            unknown = sorted(set(value) - set(rule["keys"]))
            if unknown:
                raise ValueError(f"parameter {name} has unknown keys {unknown}; allowed: {sorted(rule['keys'])}")
            check_parameters({f"{name}[{key!r}]": v for key, v in value.items()},
                             {f"{name}[{key!r}]": rule["keys"][key] for key in value})
            continue
        if isinstance(rule, dict) and "choices" in rule:
            allowed = rule["choices"]
            items = value if isinstance(value, (list, tuple)) and rule.get("many") else [value]
            bad = [v for v in items if v not in allowed]
            if bad:
                raise ValueError(f"parameter {name}={value!r} is not allowed; choose from {list(allowed)}")
            continue
        kind = rule["type"] if isinstance(rule, dict) else rule
        if isinstance(value, bool) and kind in (int, float):
            raise TypeError(f"parameter {name} must be {kind.__name__}, got bool {value!r}")
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise TypeError(f"parameter {name} must be {expected}, got {type(value).__name__} {value!r}")
        if isinstance(rule, dict):
            if "min" in rule and value < rule["min"]:
                raise ValueError(f"parameter {name}={value!r} must be >= {rule['min']}")
            if "max" in rule and value > rule["max"]:
                raise ValueError(f"parameter {name}={value!r} must be <= {rule['max']}")
    profile = values.get("profile", "default")
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is unknown; choose from {list(PROFILES)}")
    if profile == "full" and not torch.cuda.is_available():
        raise RuntimeError("profile 'full' is paper scale and needs a CUDA GPU; none is available here. "
                           "Run PROFILE=cpu (up to an hour a chapter on 2 CPU cores) or PROFILE=default instead.")


def repo_root() -> Path:
    """The report's root folder (the one holding ``results/``), found from the working directory."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "notebooks").is_dir():
            return folder
    return here


def results_dir(root: Optional[Path] = None) -> Path:
    """The folder holding ``<profile>/<notebook>.json``: ``root/results``, else ``$CAMKIT_RESULTS_DIR``,
    else ``results/`` of :func:`repo_root` (``make test`` points the variable into build/ so the
    committed results stay untouched)."""
    if root is not None:
        return Path(root) / "results"
    return Path(os.environ.get("CAMKIT_RESULTS_DIR") or repo_root() / "results")


def figures_dir() -> Path:
    """Where :func:`camkit.viz.save_figure` writes: ``$CAMKIT_FIGURES_DIR``, else ``figures/`` of
    :func:`repo_root`."""
    return Path(os.environ.get("CAMKIT_FIGURES_DIR") or repo_root() / "figures")


def _git(folder: Path, *args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def environment(checkout: Optional[Path] = None) -> dict[str, Any]:
    """What produced a result: python, torch and camkit versions, the checkout's commit, the device.

    ``git`` is ``git rev-parse --short HEAD`` of the checkout holding camkit (or ``checkout``), with
    ``+dirty`` when ``lib/`` has uncommitted or untracked changes, and None outside a git checkout.
    ``device`` is the CUDA device's name, else the CPU's (``platform.processor()``, or "cpu");
    ``device_type`` is "cuda" or "cpu".
    """
    import camkit

    folder = Path(checkout) if checkout is not None else Path(__file__).resolve().parent
    top = _git(folder, "rev-parse", "--show-toplevel")
    commit = _git(Path(top), "rev-parse", "--short", "HEAD") if top else None
    if commit and _git(Path(top), "status", "--porcelain", "--", "lib"):
        commit += "+dirty"
    cuda = torch.cuda.is_available()
    return {"python": platform.python_version(), "torch": torch.__version__, "camkit": camkit.__version__,
            "git": commit, "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
            "device_type": "cuda" if cuda else "cpu"}


def save_results(notebook: str, profile: str, data: Mapping[str, Any], root: Optional[Path] = None) -> Path:
    """Write ``data`` plus provenance to ``<results>/<profile>/<notebook>.json`` (:func:`results_dir`); returns the path.

    Provenance: ``environment`` (:func:`environment`: python, torch, camkit, git commit, device) and,
    for older readers, ``torch``, ``python`` and ``device`` at the top level.
    """
    folder = results_dir(root) / profile
    folder.mkdir(parents=True, exist_ok=True)
    env = environment()
    payload = {"notebook": notebook, "profile": profile,
               "torch": env["torch"], "python": env["python"], "device": env["device"],
               "environment": env,
               "written": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
               **data}
    path = folder / f"{notebook}.json"
    path.write_text(results_json(payload))
    return path


SIGNIFICANT_DIGITS = 7   # about float32's precision (relative error <= 5e-7), which every per-image value has


def results_json(payload: Mapping[str, Any]) -> str:
    """``payload`` as the text of a results file: floats to :data:`SIGNIFICANT_DIGITS` significant digits,
    one top-level key per line and one record per line for a top-level list of records (``comparisons``),
    so a file of thousands of per-image values stays small and its diffs readable."""
    plain = _rounded(json.loads(json.dumps(dict(payload), default=_jsonable)))

    def dumps(value) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    lines = []
    for key, value in plain.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            body = "[\n" + ",\n".join(f"  {dumps(v)}" for v in value) + "\n ]"
        else:
            body = dumps(value)
        lines.append(f" {dumps(key)}: {body}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def load_results(notebook: str, profiles: Sequence[str] = ("cpu", "default"),
                 root: Optional[Path] = None) -> dict:
    """Read the first existing ``<results>/<profile>/<notebook>.json`` in ``profiles`` order, looking in
    :func:`results_dir` and then in the report's committed ``results/``."""
    folders = list(dict.fromkeys([results_dir(root), (Path(root) if root else repo_root()) / "results"]))
    for profile in profiles:
        for folder in folders:
            path = folder / profile / f"{notebook}.json"
            if path.exists():
                return json.loads(path.read_text())
    raise FileNotFoundError(f"no results for {notebook!r} under results/{{{','.join(profiles)}}}/; "
                            "run that notebook first (make report)")


def _jsonable(value: Any):
    if torch.is_tensor(value):
        return value.detach().cpu().tolist()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def set_threads(n: Optional[int] = None) -> int:
    """Fix torch's CPU threads (default: the CPU count) so timings are comparable; returns it."""
    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
