"""A reader for Qt binary resource files (``.rcc``), in the standard library only.

GCompris ships its photos inside ``rcc`` files (``rcc -binary`` output). The format (Qt's
``src/corelib/io/qresource.cpp``), all integers big-endian:

* header: ``b"qres"``, version ``u32`` (1–3), then the offsets of the tree, the data and the
  names sections (``u32`` each); version 3 adds a ``u32`` of overall flags;
* tree: fixed-size nodes (14 bytes, 22 from version 2 on: an extra ``u64`` modification time).
  A node is ``name_offset u32, flags u16`` then, for a directory (``flags & 2``),
  ``child_count u32, first_child u32`` (a node index), else ``territory u16, language u16,
  data_offset u32``. Node 0 is the root;
* names: ``length u16, hash u32`` then ``length`` UTF-16BE code units;
* data: ``size u32`` then ``size`` bytes; when ``flags & 1`` (zlib) they are a ``u32``
  uncompressed length followed by a zlib stream; ``flags & 4`` (zstd) is refused with a clear
  error (GCompris 3.1 does not use it).

>>> from camkit.data.rcc import RccFile
>>> rcc = RccFile("explore_farm_animals.rcc")
>>> names = rcc.list()                   # ['gcompris/src/activities/.../cow.webp', ...]
>>> webp = rcc.read(names[0])            # bytes, decompressed
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Union

_COMPRESSED, _DIRECTORY, _COMPRESSED_ZSTD = 1, 2, 4


class RccError(ValueError):
    """The file is not a Qt resource file camkit can read; the message says what was wrong."""


@dataclass(frozen=True)
class RccEntry:
    """A file inside an rcc: its ``path``, ``flags`` and where its stored bytes start."""

    path: str
    flags: int
    data_offset: int

    @property
    def compressed(self) -> bool:
        """True when the stored bytes are zlib-compressed."""
        return bool(self.flags & _COMPRESSED)


class RccFile:
    """A parsed Qt resource file: :meth:`list` its file paths, :meth:`read` one file's bytes.

    The whole file is read into memory once (the largest GCompris rcc is under 5 MB); nothing is
    decompressed until :meth:`read`.
    """

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self._blob = self.path.read_bytes()
        blob = self._blob
        if len(blob) < 20 or blob[:4] != b"qres":
            raise RccError(f"{self.path} is not a Qt resource file (no 'qres' magic)")
        self.version, tree, data, names = struct.unpack_from(">IIII", blob, 4)
        if self.version not in (1, 2, 3):
            raise RccError(f"{self.path}: rcc format version {self.version} is not supported (allowed 1, 2, 3)")
        self._tree, self._data, self._names = tree, data, names
        self._node_size = 14 if self.version == 1 else 22
        self._entries: dict[str, RccEntry] = {}
        self._walk(0, "", depth=0)

    def _name(self, offset: int) -> str:
        start = self._names + offset
        (length,) = struct.unpack_from(">H", self._blob, start)
        return self._blob[start + 6:start + 6 + 2 * length].decode("utf-16-be")

    def _walk(self, node: int, prefix: str, depth: int) -> None:
        if depth > 64:
            raise RccError(f"{self.path}: directory tree deeper than 64 levels (corrupt file?)")
        at = self._tree + node * self._node_size
        if at + 14 > len(self._blob):
            raise RccError(f"{self.path}: tree node {node} lies outside the file (corrupt file?)")
        name_offset, flags = struct.unpack_from(">IH", self._blob, at)
        name = "" if node == 0 else self._name(name_offset)
        path = f"{prefix}/{name}" if prefix else name
        if flags & _DIRECTORY:
            count, first = struct.unpack_from(">II", self._blob, at + 6)
            for child in range(first, first + count):
                self._walk(child, path, depth + 1)
        else:
            (data_offset,) = struct.unpack_from(">I", self._blob, at + 10)
            self._entries[path] = RccEntry(path, flags, data_offset)

    def list(self) -> list[str]:
        """Every file path in the resource tree (no leading slash), in tree order."""
        return list(self._entries)

    def __contains__(self, path: str) -> bool:
        return path in self._entries

    def read(self, path: str) -> bytes:
        """The (decompressed) bytes of the file at ``path``; KeyError names close paths if it is absent."""
        entry = self._entries.get(path)
        if entry is None:
            tail = path.rsplit("/", 1)[-1]
            close = [p for p in self._entries if p.endswith(tail)][:5]
            raise KeyError(f"{self.path} has no entry {path!r}" + (f"; entries ending alike: {close}" if close else ""))
        start = self._data + entry.data_offset
        (size,) = struct.unpack_from(">I", self._blob, start)
        raw = self._blob[start + 4:start + 4 + size]
        if len(raw) != size:
            raise RccError(f"{self.path}: entry {path!r} is truncated ({len(raw)} of {size} bytes)")
        if entry.flags & _COMPRESSED_ZSTD:
            raise RccError(f"{self.path}: entry {path!r} is zstd-compressed, which camkit does not read "
                           "(allowed: stored or zlib)")
        if entry.flags & _COMPRESSED:
            (expected,) = struct.unpack_from(">I", raw, 0)
            out = zlib.decompress(raw[4:])
            if len(out) != expected:
                raise RccError(f"{self.path}: entry {path!r} inflates to {len(out)} bytes, header says {expected}")
            return out
        return raw
