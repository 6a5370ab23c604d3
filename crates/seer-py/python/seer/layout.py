"""The clip-retrieval layout of ``seer embed --shards``, from Python.

This module holds what :mod:`seer.ray` and :mod:`seer.spark` share, none of
which needs Ray or Spark:

* :func:`expand_shards` and :func:`read_shard`: webdataset shards read exactly
  as the command line reads them (the same brace ranges and folders, samples
  grouped by key the same way, the same image member, caption, errors, and the
  same behaviour on a corrupt or truncated shard: one that ends without its
  end-of-archive marker or gzip trailer is truncated too).
* :func:`embed_table`: an Arrow table of samples (image bytes, keys) to the
  columns ``key``, ``embedding``, ``error``, where a broken image is a row with
  ``error`` set, never an exception.
* :func:`write_shard` / :func:`shard_complete`: one output shard of the layout,
  written as the command line writes it (``img_emb/img_emb_{i}.npy``,
  ``errors/errors_{i}.parquet``, then ``metadata/metadata_{i}.parquet``, each
  to a temporary name and renamed, the metadata last), so a folder can be
  started by one tool and finished by the other. The ``.npy`` files are byte
  for byte the command line's; the parquet files hold the same columns and
  values.
* :func:`plan_unfinished` / :class:`InputRecord`: which output shards are
  finished, by the command line's rule: each output shard records the input
  it was written from (``inputs/input_{i}.json``, the command line's record),
  and a finished shard counts only when it came from the input now at its
  position; a changed input list raises :class:`InputsChangedError`.
* :func:`load`: every finished shard of a folder, rows aligned, for numpy or
  pandas.

The columns of a sample table (what :func:`seer.ray.read` and
:func:`seer.spark.read_shards` give, one row per sample) are
:func:`sample_schema`.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import zlib
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    BinaryIO,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from ._model import Model

#: Members larger than this are refused (a sample, not a dataset); as the CLI.
MAX_MEMBER_BYTES = 64 << 20

#: Member extensions read as the sample's image (the CLI's list).
IMAGE_EXTENSIONS = frozenset(
    ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm", "pnm"]
)

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")

#: Files of an image folder that are read as images.
FOLDER_IMAGE_SUFFIXES = tuple("." + e for e in sorted(IMAGE_EXTENSIONS)) + (".pbm",)

# Bookkeeping columns of a sample table: which output shard a row belongs to,
# its position there, and (on the rows of the shard's last block only) how many
# rows the shard has, so a writer knows when a shard is whole.
SHARD = "__shard__"
INDEX = "__index__"
COUNT = "__count__"
#: Why a sample could not be read (the shard is truncated, the sample has no
#: image, a member is too large): such rows are not embedded.
READ_ERROR = "__error__"
KEY = "__key__"
IMAGE = "image"
CAPTION = "txt"
IMAGE_PATH = "image_path"
ORIGIN = "origin"

#: Columns passed through to the embedded table by default, so that a writer
#: can place each row (see :func:`embed_table`).
BOOKKEEPING = (SHARD, INDEX, COUNT, IMAGE_PATH, ORIGIN, CAPTION)


def sample_schema() -> "pa.Schema":
    """The columns of a table of samples (one row per sample of an input shard)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(KEY, pa.string()),
            pa.field(IMAGE, pa.binary()),
            pa.field(CAPTION, pa.string()),
            pa.field(SHARD, pa.int64()),
            pa.field(INDEX, pa.int64()),
            pa.field(COUNT, pa.int64()),
            pa.field(IMAGE_PATH, pa.string()),
            pa.field(ORIGIN, pa.string()),
            pa.field(READ_ERROR, pa.string()),
        ]
    )


class ShardSpecError(ValueError):
    """A shard specification that names no usable shards (the message names it)."""


# ---------------------------------------------------------------------------
# Shard specifications, as `seer embed --shards` expands them.


def expand_braces(spec: str) -> List[str]:
    """Expands one ``{A..B}`` numeric range, keeping zero padding (the CLI's rule)."""
    open_, close = spec.find("{"), spec.find("}")
    if open_ < 0 or close < 0:
        return [spec]
    bad = ShardSpecError(f"bad brace range in '{spec}' (expected {{0000..0009}})")
    if close < open_:
        raise bad
    inner = spec[open_ + 1 : close]
    if ".." not in inner:
        raise bad
    a, b = inner.split("..", 1)
    if not (a.isascii() and a.isdigit() and b.isascii() and b.isdigit()):
        raise bad
    lo, hi = int(a), int(b)
    if hi < lo or hi - lo > 1_000_000:
        raise bad
    width = len(a)
    return [f"{spec[:open_]}{i:0{width}d}{spec[close + 1:]}" for i in range(lo, hi + 1)]


def is_shard(path: str) -> bool:
    return path.lower().endswith(SHARD_SUFFIXES)


def expand_shards(
    spec: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
) -> List[str]:
    """The input shards of ``spec``, in order: shard ``i`` becomes output shard ``i``.

    ``spec`` is what ``seer embed --shards`` takes (a brace range such as
    ``data/{00000..00999}.tar``, a folder of ``.tar``/``.tar.gz``/``.tgz``
    shards, or one shard), or a list of such paths. Paths are kept as written,
    so ``image_path`` and ``origin`` name them as the command line does.
    """
    if isinstance(spec, (str, os.PathLike)):
        specs = [os.fspath(spec)]
    else:
        specs = [os.fspath(s) for s in spec]
        if not specs:
            raise ShardSpecError("no shards given (an empty list)")
    out: List[str] = []
    for one in specs:
        for path in expand_braces(one):
            if os.path.isdir(path):
                names = sorted(
                    (n for n in os.listdir(path) if is_shard(n)), key=os.fsencode
                )
                if not names:
                    raise ShardSpecError(f"{path}: no .tar/.tar.gz shards in this folder")
                out.extend(os.path.join(path, n) for n in names)
            elif not os.path.isfile(path):
                raise ShardSpecError(f"{path}: no such file")
            elif not is_shard(path):
                raise ShardSpecError(f"{path}: not a webdataset shard (.tar, .tar.gz or .tgz)")
            else:
                out.append(path)
    return out


# ---------------------------------------------------------------------------
# Reading a webdataset shard, as seer-data's `read_shard` does (which uses the
# `tar` crate): the same members are read, and a shard that ends early gives
# the same samples and the same failures.

_BLOCK = 512


class _TarError(Exception):
    pass


@dataclass
class RawSample:
    """One sample as stored in a shard, or the reason it is unusable."""

    key: str = ""
    #: ``SHARD:KEY``, or the shard alone for the shard's own failure.
    origin: str = ""
    #: The image member's name and bytes.
    image: Optional[Tuple[str, bytes]] = None
    caption: Optional[str] = None
    cls: Optional[str] = None
    error: Optional[str] = None

    @staticmethod
    def failed(origin: str, error: str) -> "RawSample":
        return RawSample(origin=origin, error=error)


def _split_member(path: str) -> Tuple[str, str]:
    """webdataset's rule: the key is the path up to the first '.' of the file name."""
    slash = path.rfind("/")
    folder, name = path[: slash + 1], path[slash + 1 :]
    dot = name.find(".")
    if dot < 0:
        return path, ""
    return folder + name[:dot], name[dot + 1 :].lower()


# What Rust's `str::trim` removes (Unicode White_Space), for captions.
_WHITE_SPACE = "".join(
    map(
        chr,
        [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B)]
        + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000],
    )
)


def _read_exact_or_short(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at the end of the stream."""
    parts = []
    while n > 0:
        chunk = f.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _cstr(field_: bytes) -> bytes:
    nul = field_.find(b"\0")
    return field_ if nul < 0 else field_[:nul]


def _octal(field_: bytes, what: str) -> int:
    if field_[0] & 0x80:
        # base-256 (GNU): the remaining bytes, big-endian (as the tar crate reads it)
        return int.from_bytes(field_[-8:], "big")
    text = _cstr(field_)
    try:
        return int(text.decode("utf-8").strip(), 8)
    except (UnicodeDecodeError, ValueError):
        shown = text.decode("utf-8", "replace")
        raise _TarError(f"numeric field was not a number: {shown} {what}") from None


def _pax_records(data: bytes) -> Iterator[Tuple[bytes, bytes]]:
    for line in data.split(b"\n"):
        if not line:
            return
        space = line.find(b" ")
        if space < 0:
            continue
        body = line[space + 1 :]
        eq = body.find(b"=")
        if eq < 0:
            continue
        yield body[:eq], body[eq + 1 :]


class _Entry:
    __slots__ = ("header", "size", "path", "_tar", "_left")

    def __init__(self, tar: "_TarReader", header: bytes, size: int, path: bytes) -> None:
        self._tar = tar
        self.header = header
        self.size = size
        self.path = path
        self._left = size

    @property
    def type(self) -> bytes:
        return self.header[156:157]

    def is_file(self) -> bool:
        return self.type in (b"0", b"\0")

    def header_size(self) -> int:
        try:
            return _octal(self.header[124:136], "")
        except _TarError:
            return 2**64 - 1

    def read_all(self) -> bytes:
        data = _read_exact_or_short(self._tar.stream, self._left)
        self._tar.pos += len(data)
        self._left = 0
        return data


class _EndWatch:
    """Notes whether a read ran into the end of the shard's file (seer-data's
    ``EndWatch``). The entries end both at the first all-zero header block (the
    end-of-archive marker every writer puts there) and at end of file on a
    header boundary, which a shard cut short between two members also meets;
    only this tells the two apart."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.hit_eof = False

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        if not data and n != 0:
            self.hit_eof = True
        return data


class _TarReader:
    """The tar crate's `Archive::entries` (not seekable, zeros end the archive)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.pos = 0
        self.next = 0

    def _skip(self, amount: int) -> None:
        while amount > 0:
            chunk = self.stream.read(min(amount, 32768))
            if not chunk:
                raise _TarError("unexpected EOF during skip")
            self.pos += len(chunk)
            amount -= len(chunk)

    def _raw(self, pax: Optional[bytes]) -> Optional[_Entry]:
        self._skip(self.next - self.pos)
        header = _read_exact_or_short(self.stream, _BLOCK)
        self.pos += len(header)
        if not header:
            return None
        if len(header) < _BLOCK:
            raise _TarError("failed to read entire block")
        if header.count(0) == _BLOCK:
            return None
        self.next += _BLOCK
        total = sum(header[:148]) + sum(header[156:]) + 8 * 32
        if total != _octal(header[148:156], "(checksum)"):
            raise _TarError("archive header checksum mismatch")
        kind = header[156:157]
        size = _octal(header[124:136], "when getting size")
        if pax is not None and kind not in (b"L", b"K", b"x", b"g"):
            for k, v in _pax_records(pax):
                if k == b"size":
                    try:
                        size = int(v.decode())
                    except ValueError:
                        pass
                    break
        path = self._header_path(header)
        entry = _Entry(self, header, size, path)
        self.next += (size + _BLOCK - 1) & ~(_BLOCK - 1)
        return entry

    @staticmethod
    def _header_path(header: bytes) -> bytes:
        magic, version = header[257:263], header[263:265]
        name = header[0:100]
        if magic == b"ustar\0" and version == b"00":
            prefix = header[345:500]
            if prefix[0] == 0 and b"\\" not in name:
                return _cstr(name)
            p = _cstr(prefix)
            return (p + b"/" if p else b"") + _cstr(name)
        return _cstr(name)

    def entries(self) -> Iterator[_Entry]:
        """Yields the entries; raises ``_TarError``/``OSError``/``EOFError`` as the
        crate's iterator yields an error (after which it ends)."""
        while True:
            longname = longlink = pax = None
            processed = 0
            while True:
                processed += 1
                entry = self._raw(pax)
                if entry is None:
                    if processed > 1:
                        raise _TarError(
                            "members found describing a future member but no future member found"
                        )
                    return
                h = entry.header
                recognized = h[257:263] in (b"ustar\0", b"ustar ") and (
                    (h[257:263] == b"ustar\0" and h[263:265] == b"00")
                    or (h[257:263] == b"ustar " and h[263:265] == b" \0")
                )
                if recognized and entry.type == b"L":
                    if longname is not None:
                        raise _TarError("two long name entries describing the same member")
                    longname = entry.read_all()
                    continue
                if recognized and entry.type == b"K":
                    if longlink is not None:
                        raise _TarError("two long name entries describing the same member")
                    longlink = entry.read_all()
                    continue
                if recognized and entry.type == b"x":
                    if pax is not None:
                        raise _TarError("two pax extensions entries describing the same member")
                    pax = entry.read_all()
                    continue
                break
            if longname is not None:
                entry.path = longname[:-1] if longname.endswith(b"\0") else longname
            elif pax is not None:
                for k, v in _pax_records(pax):
                    if k == b"path":
                        entry.path = v
                        break
            yield entry


def _open_shard(path: str) -> BinaryIO:
    if path.lower().endswith((".gz", ".tgz")):
        # Every gzip member, as gzip itself reads a file (bgzip and
        # concatenated files have several); closing it closes the file.
        return gzip.GzipFile(filename=path, mode="rb")  # type: ignore[return-value]
    return open(path, "rb")


_READ_ERRORS = (_TarError, OSError, EOFError, zlib.error)


def _broken_shard(shard: str, current: Optional[RawSample], cause: str) -> Iterator[RawSample]:
    """Why the samples of a shard that breaks part way stop (seer-data's
    ``broken_shard``): given to the sample being read when it broke (its
    members may be cut or missing), then to the shard itself (an empty key)."""
    if current is not None:
        if current.error is None:
            current.error = (
                "the shard breaks in or right after this sample, which may have lost members: "
                + cause
            )
        yield current
    yield RawSample.failed(shard, cause)


def read_shard(path: Union[str, "os.PathLike[str]"]) -> Iterator[RawSample]:
    """The samples of one webdataset shard, in order, as ``seer embed --shards`` reads them.

    Members are grouped into samples by key (the member path up to the first
    '.' of its file name); a sample's image is its member with an image
    extension (the last one), its caption the ``.txt`` member. A shard that
    cannot be opened, or that breaks part way, yields what it read and then one
    failed sample with an empty key whose ``origin`` is the shard; the sample
    being read when it broke, or that ended right before the break, fails too
    (its members may be cut or missing). A shard breaks where it is corrupt,
    and where it ends without its end-of-archive marker (the zero blocks every
    tar writer puts there): a truncated file, even one cut exactly between two
    members, or an empty one. A gzip'd shard must also end with its gzip
    trailer (its samples stand, the shard's row says the file is damaged);
    concatenated gzip members are read as one stream, as ``gzip`` does.
    """
    shard = os.fspath(path)
    gzipped = shard.lower().endswith((".gz", ".tgz"))
    try:
        stream = _open_shard(shard)
    except OSError as e:
        yield RawSample.failed(shard, f"cannot open shard: {_io_message(e)}")
        return
    with stream:
        watch = _EndWatch(stream)
        reader = _TarReader(watch)
        entries = reader.entries()
        current: Optional[RawSample] = None
        members = 0
        while True:
            try:
                entry = next(entries, None)
            except _READ_ERRORS as e:
                cause = f"shard is corrupt or truncated: {_io_message(e)}"
                yield from _broken_shard(shard, current, cause)
                return
            if entry is None:
                break
            members += 1
            if not entry.is_file():
                continue
            member = entry.path.decode("utf-8", "replace")
            key, ext = _split_member(member)
            if current is not None and current.key != key:
                yield current
                current = None
            if current is None:
                current = RawSample(key=key, origin=f"{shard}:{key}")
            size = entry.header_size()
            if size > MAX_MEMBER_BYTES:
                current.error = f"member {member} is {size} bytes (limit {MAX_MEMBER_BYTES})"
                continue
            is_image = ext in IMAGE_EXTENSIONS
            if not (is_image or ext in ("txt", "cls")):
                continue
            try:
                data = entry.read_all()
            except _READ_ERRORS as e:
                current.error = f"cannot read member {member}: {_io_message(e)}"
                cause = f"shard is corrupt or truncated: {_io_message(e)}"
                yield from _broken_shard(shard, current, cause)
                return
            if is_image:
                current.image = (member, data)
            else:
                text = data.decode("utf-8", "replace").strip(_WHITE_SPACE)
                if ext == "txt":
                    current.caption = text
                else:
                    current.cls = text
        if watch.hit_eof:
            # The entries ended at the end of the file, not at the
            # end-of-archive marker: the shard was cut between two members (or
            # is empty), and the last sample may lack members after the cut.
            if members == 0:
                cause = (
                    "shard is empty or truncated: it holds no tar header nor the "
                    "end-of-archive marker"
                )
            else:
                cause = (
                    f"shard is truncated: it ends after {members} members without the "
                    "end-of-archive marker (zero blocks)"
                )
            yield from _broken_shard(shard, current, cause)
            return
        trailer: Optional[BaseException] = None
        if gzipped:
            # The gzip trailer (the checksum of all the data and its length)
            # follows the marker and the padding: read on to it, so a file cut
            # or damaged there is reported. Every member was read whole, so
            # the samples stand.
            try:
                while stream.read(1 << 16):
                    pass
            except _READ_ERRORS as e:
                trailer = e
        if current is not None:
            yield current
        if trailer is not None:
            yield RawSample.failed(
                shard,
                "shard is corrupt or truncated after its last member (gzip trailer): "
                + _io_message(trailer),
            )


def _io_message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


# ---------------------------------------------------------------------------
# Input shards of every kind, and their samples as Arrow tables.


@dataclass(frozen=True)
class InputShard:
    """One input shard: a webdataset tar, a parquet file, or a run of image files."""

    number: int
    kind: str  # "tar", "parquet" or "images"
    paths: Tuple[str, ...]

    @property
    def name(self) -> str:
        if self.kind == "images":
            first, last = self.paths[0], self.paths[-1]
            return first if first == last else f"{first} .. {last}"
        return self.paths[0]


def plan_shards(
    source: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
    *,
    files_per_shard: int = 10_000,
) -> List[InputShard]:
    """The input shards of ``source``, numbered as output shards.

    ``source`` is a webdataset shard specification (as ``seer embed --shards``
    takes it), a parquet file or a folder of ``.parquet`` files (each file an
    input shard), or a folder of image files (read recursively, sorted, cut into
    runs of ``files_per_shard``; the numbering holds while the folder does not
    change).
    """
    paths = [os.fspath(s) for s in source] if isinstance(source, (list, tuple)) else None
    one = None if paths is not None else os.fspath(source)  # type: ignore[arg-type]
    if one is not None and os.path.isdir(one):
        names = os.listdir(one)
        if any(is_shard(n) for n in names):
            return [InputShard(i, "tar", (p,)) for i, p in enumerate(expand_shards(one))]
        parquet = sorted((n for n in names if n.lower().endswith(".parquet")), key=os.fsencode)
        if parquet:
            return [
                InputShard(i, "parquet", (os.path.join(one, n),)) for i, n in enumerate(parquet)
            ]
        images = _image_files(one)
        if not images:
            raise ShardSpecError(
                f"{one}: no webdataset shards, parquet files or images in this folder"
            )
        step = max(1, int(files_per_shard))
        return [
            InputShard(i, "images", tuple(images[s : s + step]))
            for i, s in enumerate(range(0, len(images), step))
        ]
    if one is not None and one.lower().endswith(".parquet"):
        if not os.path.isfile(one):
            raise ShardSpecError(f"{one}: no such file")
        return [InputShard(0, "parquet", (one,))]
    if paths is not None and paths and all(p.lower().endswith(".parquet") for p in paths):
        for p in paths:
            if not os.path.isfile(p):
                raise ShardSpecError(f"{p}: no such file")
        return [InputShard(i, "parquet", (p,)) for i, p in enumerate(paths)]
    shards = expand_shards(paths if paths is not None else one)  # type: ignore[arg-type]
    return [InputShard(i, "tar", (p,)) for i, p in enumerate(shards)]


def plan_unfinished(
    source: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
    out_dir: Union[str, "os.PathLike[str]"],
    *,
    files_per_shard: int = 10_000,
    record: bool = True,
) -> Tuple[List["InputShard"], List["InputShard"], List[Dict[str, Any]]]:
    """``(plan, todo, reports)`` for an ``embed_shards`` run into ``out_dir``:
    every input shard, those whose output is not finished, and the command
    line's ``--json`` line for each finished one (``status`` ``skipped``).

    A finished output shard counts only when it was written from the input now
    at its position (:func:`finished_inputs`): when the input list changed
    since (a folder of shards that gained or lost one), this raises
    :class:`InputsChangedError` before anything is written. With ``record``
    (the default), each shard of ``todo`` then gets its record
    (``inputs/input_N.json``, :class:`InputRecord`) before any of its files,
    as the command line writes it, so that a later run by either tool can
    tell which input it came from."""
    plan = plan_shards(source, files_per_shard=files_per_shard)
    finished = set(finished_inputs(out_dir, plan))
    todo = [s for s in plan if s.number not in finished]
    if record:
        record_inputs(out_dir, todo)
    skipped = [shard_report(s.name, s.number, "skipped") for s in plan if s.number in finished]
    return plan, todo, skipped


# ---------------------------------------------------------------------------
# Which input an output shard came from: `inputs/input_{i}.json`, as the
# command line writes and reads it (crates/seer-cli/src/commands/shards.rs).


class InputsChangedError(ValueError):
    """An output folder whose finished shards were written from other inputs
    than those now at their positions: the input list changed since (the
    message names both inputs)."""


def _lossy(text: str) -> str:
    """A path as text, undecodable bytes replaced (as Rust's ``display`` shows it)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass(frozen=True)
class InputRecord:
    """Which input an output shard was written from, in
    ``inputs/input_{i}.json`` of the output folder (the command line's record:
    the same fields and JSON, so a folder can be resumed by either tool)."""

    #: The input's path as given (what its rows' ``image_path`` starts with).
    path: str
    #: Its real path, where it could be resolved.
    canonical: Optional[str]
    #: Its file name and size.
    name: str
    bytes: int

    @staticmethod
    def of(path: Union[str, "os.PathLike[str]"]) -> "InputRecord":
        """The record of the input file at ``path`` (raises ``OSError`` if it is gone)."""
        p = os.fspath(path)
        size = os.stat(p).st_size
        try:
            canonical: Optional[str] = _lossy(os.path.realpath(p))
        except (OSError, ValueError):
            canonical = None
        return InputRecord(_lossy(p), canonical, _lossy(os.path.basename(p)), size)

    @staticmethod
    def of_shard(shard: "InputShard") -> "InputRecord":
        """The record of an input shard: its file (a tar or parquet file), or
        for a run of image files, the run (its first and last names, how many,
        and their total size; no real path, as a run has none)."""
        if shard.kind != "images":
            return InputRecord.of(shard.paths[0])
        first, last = shard.paths[0], shard.paths[-1]
        total = sum(os.stat(p).st_size for p in shard.paths)
        name = f"{os.path.basename(first)} .. {os.path.basename(last)} ({len(shard.paths)} files)"
        return InputRecord(_lossy(shard.name), None, _lossy(name), total)

    def same_input(self, other: "InputRecord") -> bool:
        """Whether ``self`` and ``other`` name the same input: the same real
        path (the same file, however the path was written), or the same size,
        file name and folder name (the same shard, its collection moved or
        mounted elsewhere; the folder tells ``a/000.tar`` from ``b/000.tar``)."""
        return (self.canonical is not None and self.canonical == other.canonical) or (
            self.name == other.name and self.bytes == other.bytes and self.folder() == other.folder()
        )

    def folder(self) -> Optional[str]:
        """The name of the folder the input is in (from its real path)."""
        if self.canonical is None:
            return None
        parent = os.path.dirname(self.canonical.rstrip("/") or "/")
        name = os.path.basename(parent.rstrip("/"))
        return name or None

    def to_json(self) -> str:
        return json.dumps(
            {"path": self.path, "canonical": self.canonical, "name": self.name, "bytes": self.bytes},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @staticmethod
    def read(out_dir: Union[str, "os.PathLike[str]"], number: int) -> Optional["InputRecord"]:
        """The record of output shard ``number``, or None if it has none
        (written before seer kept records); a ``ValueError`` if it is not one."""
        path = input_record_path(out_dir, number)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            value = json.loads(raw.decode("utf-8"))
            record = InputRecord(
                path=value["path"],
                canonical=value.get("canonical"),
                name=value["name"],
                bytes=value["bytes"],
            )
            ok = (
                isinstance(record.path, str)
                and isinstance(record.canonical, (str, type(None)))
                and isinstance(record.name, str)
                and isinstance(record.bytes, int)
                and not isinstance(record.bytes, bool)
                and record.bytes >= 0
            )
        except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise ValueError(
                f"{path}: not a record of the input this output shard was written from"
            )
        return record

    def write(self, out_dir: Union[str, "os.PathLike[str]"], number: int, *, sync: bool = True) -> None:
        """Writes the record of output shard ``number`` (to a temporary name,
        then renamed: a reader sees it whole or not at all); ``sync``: flushed
        to disk, the file and its folder (:func:`record_inputs` syncs the
        folder once for many)."""
        path = input_record_path(out_dir, number)
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        payload = (self.to_json() + "\n").encode("utf-8")
        write_atomically(path, lambda f: f.write(payload), sync=sync)


def input_record_path(out_dir: Union[str, "os.PathLike[str]"], number: int) -> str:
    """``inputs/input_{number}.json`` of ``out_dir``."""
    return os.path.join(os.fspath(out_dir), "inputs", f"input_{number}.json")


def finished_inputs(out_dir: Union[str, "os.PathLike[str]"], plan: Sequence["InputShard"]) -> List[int]:
    """The numbers of the output shards of ``plan`` that are finished in
    ``out_dir`` (:func:`shard_complete`) and were written from the input now at
    their position (to skip), as the command line decides. Shards written
    before seer kept records (no ``inputs/input_N.json``) are taken as they
    are. Raises :class:`InputsChangedError`, naming the first, when a finished
    shard came from another input: the input list changed since, and writing
    on would mix the two lists."""
    out = os.fspath(out_dir)
    finished: List[int] = []
    changed: List[Tuple[int, InputRecord, InputRecord]] = []
    for shard in plan:
        n = shard.number
        if not shard_complete(out, n):
            continue
        was = InputRecord.read(out, n)
        if was is None:
            finished.append(n)
            continue
        now = InputRecord.of_shard(shard)
        if was.same_input(now):
            finished.append(n)
        else:
            changed.append((n, was, now))
    if changed:
        n, was, now = changed[0]
        others = (
            f" ({len(changed)} finished output shards differ)" if len(changed) > 1 else ""
        )
        raise InputsChangedError(
            f"{out}: output shard {n} was written from {was.path} ({was.bytes} bytes), but "
            f"input shard {n} is now {now.path} ({now.bytes} bytes){others}: the input list "
            f"changed since that run. Write into a new output folder, or remove {out} to "
            "start again"
        )
    return finished


def record_inputs(out_dir: Union[str, "os.PathLike[str]"], shards: Sequence["InputShard"]) -> None:
    """Writes each shard's :class:`InputRecord` into ``out_dir``
    (``inputs/input_N.json``), before any of the shards' files, so every
    finished shard has one. Each is written to a temporary name and renamed
    (whole or absent, as the command line writes it, which does not sync it
    either); the folder is synced once at the end: an fsync per record would
    hold a run of thousands of shards up for minutes."""
    for shard in shards:
        InputRecord.of_shard(shard).write(out_dir, shard.number, sync=False)
    if shards:
        _sync_folder(os.path.dirname(input_record_path(out_dir, shards[0].number)))


def shard_report(
    name: str, number: int, status: str, rows: Optional[int] = None, errors: Optional[int] = None
) -> Dict[str, Any]:
    """One ``--json`` line of ``seer embed --shards``."""
    return {"shard": name, "number": number, "status": status, "rows": rows, "errors": errors}


def _image_files(folder: str) -> List[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            if name.lower().endswith(FOLDER_IMAGE_SUFFIXES) and not name.startswith("."):
                found.append(os.path.join(root, name))
    return sorted(found, key=os.fsencode)


def shard_tables(
    shard: InputShard,
    *,
    rows_per_block: int = 256,
    image_column: Optional[str] = None,
    key_column: Optional[str] = None,
    caption_column: Optional[str] = None,
) -> Iterator["pa.Table"]:
    """The samples of one input shard as Arrow tables of :func:`sample_schema`.

    Rows are numbered from 0 in shard order (``__index__``); the rows of the
    last table carry the shard's row count (``__count__``), so a writer knows
    when it holds the whole shard. A shard without samples yields nothing.
    """
    if shard.kind == "tar":
        samples = _tar_rows(shard.paths[0])
    elif shard.kind == "parquet":
        samples = _parquet_rows(shard.paths[0], image_column, key_column, caption_column)
    elif shard.kind == "images":
        samples = _file_rows(shard.paths)
    else:
        raise ValueError(f"unknown input shard kind {shard.kind!r}")
    block: List[Tuple] = []
    index = 0
    for row in samples:
        block.append(row)
        if len(block) > rows_per_block:
            # Keep one row back: the last table must have rows to carry the count.
            yield _table(shard.number, index, block[:-1], None)
            index += len(block) - 1
            block = block[-1:]
    if block:
        yield _table(shard.number, index, block, index + len(block))


# A row of a sample table before numbering: key, image, caption, image_path,
# origin, read error.
_Row = Tuple[Optional[str], Optional[bytes], Optional[str], Optional[str], str, Optional[str]]


def _tar_rows(path: str) -> Iterator[_Row]:
    for s in read_shard(path):
        member, data = s.image if s.image is not None else (None, None)
        error = s.error
        if error is None and data is None:
            error = "the sample has no image"
        image_path = f"{path}/{member}" if member is not None else None
        yield (s.key, data if error is None else None, s.caption, image_path, s.origin, error)


def _parquet_rows(
    path: str,
    image_column: Optional[str],
    key_column: Optional[str],
    caption_column: Optional[str],
) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a failed shard
        yield ("", None, None, None, path, f"cannot read parquet file: {e}")
        return
    names = f.schema_arrow.names
    image = image_column or _first_present(names, ("jpg", "image", "png", "jpeg", "webp", "bytes"))
    if image is None or image not in names:
        raise ValueError(
            f"{path}: no image column "
            + (f"'{image_column}'" if image_column else "(looked for jpg, image, png, jpeg, webp, bytes)")
            + f"; the file has: {', '.join(names)}"
        )
    key = key_column or _first_present(names, (KEY, "key", "url", "path"))
    if key_column is not None and key_column not in names:
        raise ValueError(f"{path}: no key column '{key_column}'; the file has: {', '.join(names)}")
    caption = caption_column or _first_present(names, ("txt", "caption", "text"))
    if caption_column is not None and caption_column not in names:
        raise ValueError(
            f"{path}: no caption column '{caption_column}'; the file has: {', '.join(names)}"
        )
    columns = [c for c in (image, key, caption) if c is not None]
    row = 0
    try:
        for batch in f.iter_batches(columns=columns, batch_size=1024):
            images = batch.column(image).to_pylist()
            keys = batch.column(key).cast("string").to_pylist() if key else None
            captions = batch.column(caption).cast("string").to_pylist() if caption else None
            for i, data in enumerate(images):
                k = keys[i] if keys is not None else str(row)
                k = "" if k is None else k
                where = f"{path}#{row}"
                error = None
                if data is None:
                    error = f"the sample has no image (column '{image}' is null)"
                elif not isinstance(data, (bytes, bytearray)):
                    raise ValueError(
                        f"{path}: column '{image}' holds {type(data).__name__}, not image file bytes"
                    )
                yield (k, data, captions[i] if captions else None, where, f"{path}:{k}", error)
                row += 1
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - a file that breaks part way is a failed shard
        yield ("", None, None, None, path, f"parquet file is corrupt or truncated: {e}")


def _file_rows(paths: Sequence[str]) -> Iterator[_Row]:
    for p in paths:
        try:
            with open(p, "rb") as f:
                data = f.read()
            error = None
        except OSError as e:
            data, error = None, f"cannot read: {_io_message(e)}"
        yield (p, data, None, p, p, error)


def _first_present(names: Sequence[str], wanted: Sequence[str]) -> Optional[str]:
    return next((w for w in wanted if w in names), None)


def _table(number: int, start: int, rows: List[Tuple], count: Optional[int]) -> "pa.Table":
    import pyarrow as pa

    n = len(rows)
    cols = list(zip(*rows)) if rows else [[]] * 6
    return pa.Table.from_arrays(
        [
            pa.array(cols[0], pa.string()),
            pa.array(cols[1], pa.binary()),
            pa.array(cols[2], pa.string()),
            pa.array([number] * n, pa.int64()),
            pa.array(range(start, start + n), pa.int64()),
            pa.array([count] * n, pa.int64()),
            pa.array(cols[3], pa.string()),
            pa.array(cols[4], pa.string()),
            pa.array(cols[5], pa.string()),
        ],
        schema=sample_schema(),
    )


# ---------------------------------------------------------------------------
# Embedding a table of samples.

#: Image columns looked for when none is named, in order: webdataset's
#: (``ray.data.read_webdataset(..., decoder=None)``), seer's readers', and
#: ``ray.data.read_binary_files``'.
AUTO_IMAGE_COLUMNS = ("jpg", IMAGE, "png", "jpeg", "webp", "bytes", "content")


def image_columns(names: Sequence[str], image_column: Union[None, str, Sequence[str]]) -> List[str]:
    """The image column(s) of a table: ``image_column``, or the first found of
    :data:`AUTO_IMAGE_COLUMNS` (with webdataset's per-extension columns, every
    one present: a row's image is its first non-null one)."""
    if image_column is None:
        found = [c for c in AUTO_IMAGE_COLUMNS if c in names]
        if not found:
            raise ValueError(
                "no image column: looked for "
                + ", ".join(AUTO_IMAGE_COLUMNS)
                + f"; the table has: {', '.join(names)} (pass image_column=)"
            )
        # A webdataset's extension columns are alternatives; other names are not.
        wds = [c for c in found if c in ("jpg", "png", "jpeg", "webp")]
        return wds if wds else found[:1]
    wanted = [image_column] if isinstance(image_column, str) else list(image_column)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(
            f"no column {', '.join(repr(c) for c in missing)} "
            f"(the table has: {', '.join(names)})"
        )
    return wanted


def key_column_of(names: Sequence[str], key_column: Optional[str]) -> Optional[str]:
    if key_column is not None:
        if key_column not in names:
            raise ValueError(f"no key column '{key_column}' (the table has: {', '.join(names)})")
        return key_column
    return _first_present(names, (KEY, "path"))


def to_arrow(batch: Any) -> "pa.Table":
    """A batch as Ray or Spark hands it (pyarrow Table or RecordBatch, pandas
    DataFrame, dict of numpy arrays) as a pyarrow Table."""
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    if isinstance(batch, dict):
        return pa.table({k: _arrow_column(v) for k, v in batch.items()})
    if hasattr(batch, "columns") and hasattr(batch, "to_dict"):  # pandas
        return pa.table({str(c): _arrow_column(batch[c].to_numpy()) for c in batch.columns})
    raise TypeError(
        "expected a pyarrow Table, pandas DataFrame or dict of numpy arrays, "
        f"got {type(batch).__name__}"
    )


def _arrow_column(values: Any) -> Any:
    import pyarrow as pa

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    values = np.asarray(values)
    if values.dtype == object:
        return pa.array(list(values))
    if values.ndim > 1:
        flat = pa.array(np.ascontiguousarray(values).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(values.shape[1:])))
    return pa.array(values)


def embed_table(
    model: "Model",
    batch: Any,
    *,
    image_column: Union[None, str, Sequence[str]] = None,
    key_column: Optional[str] = None,
    passthrough: Optional[Sequence[str]] = None,
    normalize: bool = True,
) -> "pa.Table":
    """Embeds the images of a batch: ``key``, ``embedding``, ``error``, then the
    passed-through columns.

    The images are encoded files (bytes: seer decodes them, so rows equal
    ``seer embed``'s bit for bit) or, in a dict of numpy arrays, decoded HxWx3
    uint8 images. ``embedding`` is ``fixed_size_list<float32>[dim]``, null
    where the sample failed, and ``error`` says why (null where it worked): a
    corrupt, truncated or empty image, a sample without an image, or the
    reader's error (``__error__``). A bad sample never raises; a bad table
    does, with a ``ValueError`` that names the column: no image column, a key
    column with no text form (a list, a struct), or a column this call reads
    (image, key, passed through) whose name another column shares.

    ``passthrough``: the columns copied to the result; by default every column
    but the image(s), the key and ``__error__``. The bookkeeping columns a
    clip-retrieval writer needs (``__shard__``, ``__index__``, ``__count__``,
    ``image_path``, ``origin``, ``txt``) are kept whenever present.
    """
    import pyarrow as pa

    decoded = _decoded_images(batch, image_column)
    if decoded is not None:
        images = [decoded[0]]
        cells: List[Any] = decoded[1]
        table = to_arrow({k: v for k, v in batch.items() if k != decoded[0]})
    else:
        table = to_arrow(batch)
        images = image_columns(table.column_names, image_column)
        _named_once(table.column_names, images)
        cells = _image_cells(table, images)
    names = table.column_names
    key = key_column_of(names, key_column)
    _named_once(names, [key] if key is not None else [])
    rows = table.num_rows
    keys = (
        _keys_as_text(table.column(key), key)
        if key is not None
        else pa.array([str(i) for i in range(rows)], pa.string())
    )
    errors: List[Optional[str]] = (
        table.column(READ_ERROR).to_pylist() if READ_ERROR in names else [None] * rows
    )
    for i in range(rows):
        if errors[i] is None and cells[i] is None:
            errors[i] = (
                f"the sample has no image (column '{images[0]}' is null)"
                if len(images) == 1
                else f"the sample has no image (columns {', '.join(images)} are null)"
            )
    todo = [i for i in range(rows) if errors[i] is None]
    vectors = np.full((rows, model.dim), np.nan, dtype=np.float32)
    if todo:
        got, failures = model.embed_images(
            [cells[i] for i in todo], errors="return", normalize=normalize
        )
        vectors[todo] = got
        named = _sample_names(table, keys) if any(f is not None for f in failures) else None
        for i, message in zip(todo, failures):
            if message is not None:
                cause = _strip_input_prefix(message)
                errors[i] = cause if named is None or named[i] is None else f"{named[i]}: {cause}"
    failed = pa.array([e is not None for e in errors])
    out = {
        "key": keys,
        "embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.reshape(-1), pa.float32()), model.dim, mask=failed
        ),
        "error": pa.array(errors, pa.string()),
    }
    skip = set(images) | {READ_ERROR} | ({key} if key is not None else set())
    if passthrough is None:
        keep = [c for c in names if c not in skip and c not in out]
    else:
        keep = [c for c in passthrough if c not in out]
        missing = [c for c in keep if c not in names]
        if missing:
            raise ValueError(
                f"passthrough: no column {', '.join(map(repr, missing))} "
                f"(the table has: {', '.join(names)})"
            )
        keep += [c for c in BOOKKEEPING if c in names and c not in keep and c not in out]
    _named_once(names, keep)
    for c in keep:
        out[c] = table.column(c)
    return pa.table(out)


def _sample_names(table: "pa.Table", keys: "pa.Array") -> Optional[List[Optional[str]]]:
    """What an image error names, as the command line does: a shard's member
    (``image_path`` less ``SHARD/``), else the ``image_path``; None without one."""
    if IMAGE_PATH not in table.column_names:
        return None
    paths = table.column(IMAGE_PATH).to_pylist()
    origins = (
        table.column(ORIGIN).to_pylist() if ORIGIN in table.column_names else [None] * len(paths)
    )
    names: List[Optional[str]] = []
    for path, origin, key in zip(paths, origins, keys.to_pylist()):
        if path is not None and origin and key is not None and origin.endswith(":" + key):
            shard = origin[: -len(key) - 1]
            if path.startswith(shard + "/"):
                path = path[len(shard) + 1 :]
        names.append(path)
    return names


_INPUT_PREFIX = re.compile(r"^input \d+ \((.*?)\): ")


def _strip_input_prefix(message: str) -> str:
    """``input 3 (bytes): cause`` -> ``cause`` (a position in a batch means nothing here)."""
    return _INPUT_PREFIX.sub("", message, count=1)


def _named_once(names: Sequence[str], used: Sequence[str]) -> None:
    """Refuses a table where a column this call reads has a name shared with
    another column (pyarrow cannot tell them apart)."""
    for name in dict.fromkeys(used):
        count = list(names).count(name)
        if count > 1:
            raise ValueError(
                f"the table has {count} columns named '{name}': rename or drop all but one"
            )


def _keys_as_text(column: "pa.ChunkedArray", name: str) -> "pa.Array":
    """The key column as strings, or a ValueError naming it when its type has no
    text form (a list, a struct)."""
    import pyarrow as pa

    try:
        return column.cast(pa.string()).combine_chunks()
    except (pa.ArrowException, ValueError, TypeError) as e:
        raise ValueError(
            f"key column '{name}' holds {column.type}, which cannot be cast to strings "
            f"({e}): pass key_column= another column, or rename it"
        ) from None


def _image_cells(table: "pa.Table", columns: Sequence[str]) -> List[Any]:
    """Per row, the first non-null image of ``columns`` (None if none): an
    encoded file's bytes, or a decoded HxWx3 array."""
    import pyarrow as pa

    cells: Optional[List[Any]] = None
    for c in columns:
        col = table.column(c)
        if pa.types.is_null(col.type):
            # A webdataset extension absent from this block (Ray unifies the
            # columns of blocks from different shards).
            continue
        values = col.to_pylist()
        if not _is_binary(col.type):
            # Ray keeps Python objects it could not type in an extension
            # column: bytes (or decoded arrays) still work, and missing
            # values may come back as NaN (pandas' missing value).
            values = [None if isinstance(v, float) and v != v else v for v in values]
            bad = next((v for v in values if v is not None and not _is_image_value(v)), None)
            if bad is not None or pa.types.is_list(col.type):
                raise TypeError(
                    f"column '{c}' holds {col.type}, not encoded image files: read webdataset "
                    "shards with seer.ray.read (or ray.data.read_webdataset(..., decoder=None)) "
                    "and image folders with read_binary_files"
                )
        cells = values if cells is None else [a if a is not None else b for a, b in zip(cells, values)]
    return cells if cells is not None else [None] * table.num_rows


def _is_image_value(v: Any) -> bool:
    return isinstance(v, (bytes, bytearray, memoryview)) or (
        isinstance(v, np.ndarray) and v.ndim == 3
    )


def _is_binary(kind: "pa.DataType") -> bool:
    import pyarrow as pa

    return (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
        or getattr(pa.types, "is_binary_view", lambda _: False)(kind)
    )


def _decoded_images(
    batch: Any, image_column: Union[None, str, Sequence[str]]
) -> Optional[Tuple[str, List[Optional[np.ndarray]]]]:
    """``(column, arrays)`` when a dict batch holds decoded HxWx3 images
    (``ray.data.read_images``, webdataset's default decoder), else None."""
    if not isinstance(batch, dict):
        return None
    if isinstance(image_column, str):
        candidates = [image_column]
    elif image_column is None:
        candidates = [c for c in AUTO_IMAGE_COLUMNS if c in batch]
    else:
        candidates = list(image_column)
    for c in candidates:
        values = batch.get(c)
        if isinstance(values, np.ndarray) and values.dtype != object and values.ndim == 4:
            return c, list(values)
        if isinstance(values, (np.ndarray, list)) and any(
            isinstance(v, np.ndarray) and v.ndim == 3 for v in values
        ):
            return c, [v if isinstance(v, np.ndarray) else None for v in values]
    return None


# ---------------------------------------------------------------------------
# Writing output shards.

DTYPES = {"float32": "<f4", "f32": "<f4", "float16": "<f2", "f16": "<f2"}


def npy_dtype(dtype: Any) -> str:
    """``'<f4'`` or ``'<f2'`` for the ways of naming float32 and float16."""
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    try:
        kind = np.dtype(dtype)
    except TypeError:
        kind = None
    if kind == np.float32:
        return "<f4"
    if kind == np.float16:
        return "<f2"
    raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")


def npy_bytes(vectors: np.ndarray, dtype: Any = "float32") -> bytes:
    """An ``.npy`` file (format 1.0) of a 2-d array, byte for byte what seer writes."""
    descr = npy_dtype(dtype)
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-d array, got shape {vectors.shape}")
    rows, cols = vectors.shape
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}"
    unpadded = 10 + len(text) + 1
    total = -(-unpadded // 64) * 64
    header = text + " " * (total - unpadded) + "\n"
    data = np.ascontiguousarray(vectors.astype(np.float32, copy=False).astype(descr, copy=False))
    preamble = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
    return preamble + header.encode("latin-1") + data.tobytes()


def shard_paths(out_dir: Union[str, "os.PathLike[str]"], number: int) -> Tuple[str, str, str]:
    """``(img_emb, errors, metadata)`` of output shard ``number``."""
    out = os.fspath(out_dir)
    return (
        os.path.join(out, "img_emb", f"img_emb_{number}.npy"),
        os.path.join(out, "errors", f"errors_{number}.parquet"),
        os.path.join(out, "metadata", f"metadata_{number}.parquet"),
    )


def empty_marker(out_dir: Union[str, "os.PathLike[str]"], number: int) -> str:
    """Marks a finished shard without embedded rows, which has no embeddings or
    metadata file: embedding-reader (what autofaiss and clip-retrieval read
    these folders with) fails on a folder holding a 0-row ``.npy``."""
    return os.path.join(os.fspath(out_dir), "errors", f"empty_{number}")


def shard_complete(out_dir: Union[str, "os.PathLike[str]"], number: int) -> bool:
    """Whether output shard ``number`` was written whole: its three files exist,
    or, for a shard without embedded rows, its errors file and the empty
    marker (the command line's rule)."""
    npy_path, errors_path, meta_path = shard_paths(out_dir, number)
    return os.path.isfile(errors_path) and (
        (os.path.isfile(npy_path) and os.path.isfile(meta_path))
        or os.path.isfile(empty_marker(out_dir, number))
    )


def write_atomically(dest: str, fill: Callable[[BinaryIO], None], *, sync: bool = True) -> None:
    """Writes ``dest`` through a temporary file beside it (``.NAME.RANDOM.tmp``),
    then renamed over ``dest``: a reader or a later run sees the old file or
    the new one, never part of one. ``sync``: the file is synced before the
    rename and the folder after it (a caller writing many files may sync the
    folder once itself)."""
    folder, name = os.path.split(dest)
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync:
        _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _string_table(columns: Sequence[Tuple[str, bool, Sequence[Optional[str]]]]) -> "pa.Table":
    import pyarrow as pa

    fields = [pa.field(name, pa.string(), nullable=not required) for name, required, _ in columns]
    arrays = [pa.array(list(values), pa.string()) for _, _, values in columns]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _write_parquet(dest: str, table: "pa.Table") -> None:
    import pyarrow.parquet as pq

    write_atomically(dest, lambda f: pq.write_table(table, f, compression="snappy"))


def write_shard(
    out_dir: Union[str, "os.PathLike[str]"],
    number: int,
    *,
    keys: Sequence[str],
    image_paths: Sequence[str],
    captions: Sequence[Optional[str]],
    vectors: np.ndarray,
    failures: Sequence[Tuple[str, str, str]] = (),
    dtype: Any = "float32",
) -> None:
    """Writes output shard ``number`` as ``seer embed --shards`` does.

    ``vectors[i]`` belongs to ``keys[i]`` (metadata row ``i``: ``image_path``,
    ``key``, ``caption``); ``failures`` are ``(key, origin, error)``. The
    embeddings are written first, then the errors, then the metadata, each
    atomically, so the shard counts as finished (:func:`shard_complete`) only
    once all three are whole. Without rows: the errors, then the empty marker
    (:func:`empty_marker`), and no embeddings or metadata file.
    """
    npy_path, errors_path, meta_path = shard_paths(out_dir, number)
    vectors = np.asarray(vectors)
    if not (len(keys) == len(image_paths) == len(captions) == vectors.shape[0]):
        raise ValueError(
            f"{npy_path}: {len(keys)} keys, {len(image_paths)} paths, {len(captions)} captions "
            f"for {vectors.shape[0]} embeddings"
        )
    for p in (npy_path, errors_path, meta_path):
        os.makedirs(os.path.dirname(p), exist_ok=True)
    if len(keys):
        payload = npy_bytes(vectors, dtype)
        write_atomically(npy_path, lambda f: f.write(payload))
    _write_parquet(
        errors_path,
        _string_table(
            [
                ("key", True, [f[0] for f in failures]),
                ("origin", True, [f[1] for f in failures]),
                ("error", True, [f[2] for f in failures]),
            ]
        ),
    )
    if not len(keys):
        write_atomically(empty_marker(out_dir, number), lambda f: None)
        return
    _write_parquet(
        meta_path,
        _string_table(
            [("image_path", True, image_paths), ("key", True, keys), ("caption", False, captions)]
        ),
    )


def embedding_matrix(column: Any, dim: Optional[int] = None) -> np.ndarray:
    """A column of embeddings (fixed-size or variable lists of float32, or Ray's
    tensor extension) as a float32 ``(rows, dim)`` array; null rows are NaN."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if isinstance(column, pa.ExtensionArray):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(column), -1)
    rows = len(column)
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        values = column.values.slice(column.offset * width, rows * width)
        out = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(rows, width)
    elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        cells = column.to_pylist()
        width = dim or next((len(c) for c in cells if c is not None), 0)
        out = np.full((rows, width), np.nan, dtype=np.float32)
        for i, c in enumerate(cells):
            if c is not None:
                out[i] = c
        return out
    else:
        raise TypeError(f"embedding column of type {column.type}: expected a list of float32")
    if column.null_count:
        out = out.copy()
        out[np.asarray(column.is_null())] = np.nan
    return out


@dataclass
class ShardBuffer:
    """The embedded rows of one output shard received so far, in any order.

    A row that arrives twice (a retried task whose first output got through) is
    kept once: rows are told apart by ``__index__``. The shard is whole once
    every row up to the count that its last rows carry (``__count__``) is here.
    """

    number: int
    count: Optional[int] = None
    parts: List["pa.Table"] = field(default_factory=list)
    seen: set = field(default_factory=set)
    duplicates: int = 0

    def add(self, table: "pa.Table") -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        counts = table.column(COUNT)
        if counts.null_count < len(counts):
            total = pc.max(counts).as_py()
            if self.count is not None and self.count != total:
                raise RuntimeError(
                    f"output shard {self.number}: its rows give two row counts, "
                    f"{self.count} and {total}"
                )
            self.count = total
        keep = []
        for i in table.column(INDEX).to_pylist():
            keep.append(i not in self.seen)
            self.seen.add(i)
        dropped = keep.count(False)
        if dropped:
            self.duplicates += dropped
            table = table.filter(pa.array(keep))
        if table.num_rows:
            self.parts.append(table)

    @property
    def whole(self) -> bool:
        return self.count is not None and len(self.seen) == self.count

    def write(self, out_dir: str, dtype: Any, dim: Optional[int]) -> Dict[str, int]:
        """Writes the shard, rows in shard order; returns its ``rows`` and ``errors``."""
        import pyarrow as pa

        table = None
        if self.parts:
            table = pa.concat_tables(self.parts, promote_options="default").sort_by(INDEX)
        return write_embedded_shard(out_dir, self.number, table, dtype=dtype, dim=dim)


def write_embedded_shard(
    out_dir: Union[str, "os.PathLike[str]"],
    number: int,
    table: Optional["pa.Table"],
    *,
    dtype: Any = "float32",
    dim: Optional[int] = None,
) -> Dict[str, int]:
    """Writes output shard ``number`` from embedded rows in shard order (columns
    ``key``, ``embedding``, ``error``, and ``image_path``, ``origin``, ``txt``
    where present): rows without an error go to the embeddings and metadata,
    the others to the errors file. Returns the ``rows`` and ``errors`` written."""
    if table is None or table.num_rows == 0:
        # No embeddings file for it, so its size does not matter.
        write_shard(out_dir, number, keys=[], image_paths=[], captions=[],
                    vectors=np.zeros((0, dim or 0), np.float32), dtype=dtype)
        return {"rows": 0, "errors": 0}
    names = table.column_names
    errors = table.column("error").to_pylist()
    keys = [k or "" for k in table.column("key").to_pylist()]
    origins = table.column(ORIGIN).to_pylist() if ORIGIN in names else keys
    paths = table.column(IMAGE_PATH).to_pylist() if IMAGE_PATH in names else keys
    captions = table.column(CAPTION).to_pylist() if CAPTION in names else [None] * len(keys)
    good = [i for i, e in enumerate(errors) if e is None]
    vectors = embedding_matrix(table.column("embedding"), dim)[good]
    failures = [(keys[i], origins[i] or "", e) for i, e in enumerate(errors) if e is not None]
    write_shard(
        out_dir,
        number,
        keys=[keys[i] for i in good],
        image_paths=[paths[i] or "" for i in good],
        captions=[captions[i] for i in good],
        vectors=vectors,
        failures=failures,
        dtype=dtype,
    )
    return {"rows": len(good), "errors": len(failures)}


# ---------------------------------------------------------------------------
# Reading the layout back.


def finished_shards(out_dir: Union[str, "os.PathLike[str]"]) -> List[int]:
    """The numbers of the finished output shards in ``out_dir``, ascending
    (those without embedded rows included)."""
    numbers = set()
    for folder, pattern in (("img_emb", r"img_emb_(\d+)\.npy"), ("errors", r"empty_(\d+)")):
        try:
            names = os.listdir(os.path.join(os.fspath(out_dir), folder))
        except FileNotFoundError:
            continue
        for name in names:
            m = re.fullmatch(pattern, name)
            if m and shard_complete(out_dir, int(m.group(1))):
                numbers.add(int(m.group(1)))
    return sorted(numbers)


def load(out_dir: Union[str, "os.PathLike[str]"]) -> Tuple[np.ndarray, "pa.Table", "pa.Table"]:
    """Every finished shard of a clip-retrieval folder, in shard order:
    ``(embeddings, metadata, errors)``, where ``embeddings[i]`` belongs to row
    ``i`` of ``metadata`` (``image_path``, ``key``, ``caption``, plus ``shard``).
    ``errors`` has ``key``, ``origin``, ``error`` and ``shard``. Embeddings come
    back as stored (float32 or float16)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, metas, errs = [], [], []
    for n in finished_shards(out_dir):
        npy_path, errors_path, meta_path = shard_paths(out_dir, n)
        err = pq.read_table(errors_path)
        errs.append(err.append_column("shard", pa.array([n] * err.num_rows, pa.int64())))
        if not os.path.isfile(npy_path):
            continue  # a shard without embedded rows
        array = np.load(npy_path)
        meta = pq.read_table(meta_path)
        if meta.num_rows != array.shape[0]:
            raise ValueError(
                f"{meta_path}: {meta.num_rows} rows but {array.shape[0]} embeddings in {npy_path}"
            )
        arrays.append(array)
        metas.append(meta.append_column("shard", pa.array([n] * meta.num_rows, pa.int64())))
    if not arrays:
        raise FileNotFoundError(
            f"{os.fspath(out_dir)}: no finished shards (img_emb/img_emb_N.npy with its metadata)"
        )
    return (
        np.concatenate(arrays),
        pa.concat_tables(metas, promote_options="default"),
        pa.concat_tables(errs, promote_options="default"),
    )
