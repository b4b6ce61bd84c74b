"""Fetch the darknet sample photos (Debian package ``darknet``) into camkit's data cache.

The cache is ``camkit.data.paths.cache_dir()``: ``$CAMKIT_DATA_DIR`` if set, else ``~/.cache/camkit``.

``make data`` runs this. It does ``apt-get download darknet`` and ``dpkg -x`` (no install, no
root needed for the extraction; ``apt-get update`` is run once if the first download fails).
It is idempotent: with the photos already cached it returns at once.

With ``CI=true`` in the environment any failure exits non-zero (CI must test the multi-object
photos); elsewhere it prints a warning and exits 0, and the tests that need the photos skip.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from camkit.data.paths import cache_dir  # noqa: E402

CACHE = cache_dir()
DARKNET_DIR = CACHE / "darknet"
PHOTO_SUBDIR = Path("usr/share/darknet/data")
PHOTOS = ("dog", "eagle", "giraffe", "horses", "kite", "person")
TIMEOUT_S = 300


def cached() -> bool:
    """True when every darknet photo is already in the cache."""
    return all((DARKNET_DIR / PHOTO_SUBDIR / f"{name}.jpg").is_file() for name in PHOTOS)


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)


def fetch() -> None:
    """Download and extract the darknet package; raise RuntimeError with the tool output on failure."""
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: the darknet photos come from a Debian package "
                               "(run on Debian/Ubuntu, or copy usr/share/darknet/data/*.jpg into "
                               f"{DARKNET_DIR / PHOTO_SUBDIR})")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        tmp_path = Path(tmp)
        result = _run(["apt-get", "download", "darknet"], tmp_path)
        if result.returncode != 0:
            print("fetch_data: apt-get download failed, running apt-get update once and retrying",
                  file=sys.stderr)
            update = _run(["apt-get", "update"], tmp_path)
            if update.returncode != 0:
                raise RuntimeError(f"apt-get update failed (are you root?):\n{update.stderr.strip()}")
            result = _run(["apt-get", "download", "darknet"], tmp_path)
        debs = sorted(tmp_path.glob("darknet_*.deb"))
        if result.returncode != 0 or not debs:
            raise RuntimeError(f"apt-get download darknet failed:\n{result.stderr.strip()}")
        extract = tmp_path / "x"
        unpacked = _run(["dpkg", "-x", str(debs[0]), str(extract)], tmp_path)
        if unpacked.returncode != 0:
            raise RuntimeError(f"dpkg -x {debs[0].name} failed:\n{unpacked.stderr.strip()}")
        missing = [n for n in PHOTOS if not (extract / PHOTO_SUBDIR / f"{n}.jpg").is_file()]
        if missing:
            raise RuntimeError(f"the darknet package has no {missing} under {PHOTO_SUBDIR}")
        target = DARKNET_DIR / PHOTO_SUBDIR
        target.mkdir(parents=True, exist_ok=True)
        for name in PHOTOS:
            shutil.copy2(extract / PHOTO_SUBDIR / f"{name}.jpg", target / f"{name}.jpg")
        copyright_file = extract / "usr/share/doc/darknet/copyright"
        if copyright_file.is_file():
            shutil.copy2(copyright_file, DARKNET_DIR / "copyright")
        (DARKNET_DIR / "SOURCE").write_text(f"{debs[0].name}\n")


def main() -> int:
    if cached():
        print(f"fetch_data: darknet photos already in {DARKNET_DIR / PHOTO_SUBDIR}")
        return 0
    strict = os.environ.get("CI", "").lower() == "true"
    try:
        fetch()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        message = f"fetch_data: could not fetch the darknet photos: {error}"
        if strict:
            print(f"ERROR {message}\n(CI=true: the multi-object photos are required)", file=sys.stderr)
            return 1
        print(f"WARNING {message}\nTests and report sections that need them will be skipped.",
              file=sys.stderr)
        return 0
    print(f"fetch_data: darknet photos written to {DARKNET_DIR / PHOTO_SUBDIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
