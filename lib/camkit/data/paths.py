"""Where camkit finds its files, in or out of a checkout.

Two kinds of files:

* **assets** ship inside the package (``camkit/data/assets/``): hand-drawn boxes, class-mapping
  tables, the shapes CNNs' weights. They are found wherever camkit is installed.
* **fetched data** (photos unpacked from Debian packages by ``make data`` / ``camkit fetch``) live in a
  cache, searched in this order:

  1. ``$CAMKIT_DATA_DIR`` when set;
  2. the per-user cache, ``$XDG_CACHE_HOME/camkit`` (default ``~/.cache/camkit``);
  3. ``data/cache/`` of a source checkout (older checkouts fetched there).

  ``make data`` writes to the first of 1–2 (:func:`cache_dir`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

#: Files that ship inside the package.
ASSETS = Path(__file__).resolve().parent / "assets"
#: Environment variable naming the data cache (first in the search order).
ENV_VAR = "CAMKIT_DATA_DIR"


class DataUnavailableError(FileNotFoundError):
    """A file camkit needs is not on this machine; the message says how to get it."""


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/camkit``, default ``~/.cache/camkit``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "camkit"


def checkout_dir() -> Optional[Path]:
    """The source checkout camkit is imported from (its ``pyproject.toml`` and ``notebooks/``), if any."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() else None


def search_dirs() -> list[Path]:
    """The data caches in search order (see the module docstring)."""
    dirs = [Path(os.environ[ENV_VAR])] if os.environ.get(ENV_VAR) else []
    dirs.append(user_cache_dir())
    checkout = checkout_dir()
    if checkout is not None:
        dirs.append(checkout / "data" / "cache")
    return dirs


def cache_dir() -> Path:
    """Where ``make data`` writes: ``$CAMKIT_DATA_DIR`` if set, else the per-user cache."""
    return search_dirs()[0]


def find(relative: str, *, required: bool = False, hint: str = "run `make data` (or `camkit fetch`)") -> Optional[Path]:
    """The first existing ``<cache>/<relative>`` in :func:`search_dirs` order; None (or an error
    naming every place looked at when ``required``) if there is none."""
    for folder in search_dirs():
        path = folder / relative
        if path.exists():
            return path
    if required:
        looked = ", ".join(str(folder / relative) for folder in search_dirs())
        raise DataUnavailableError(f"{relative} is not in any camkit data cache (looked in {looked}); {hint}")
    return None


def asset(name: str) -> Path:
    """The path of a file shipped in ``camkit/data/assets/`` (an error if the package lacks it)."""
    path = ASSETS / name
    if not path.exists():
        raise DataUnavailableError(f"camkit asset {name!r} is missing from {ASSETS}; reinstall camkit")
    return path
