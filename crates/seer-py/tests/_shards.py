"""Webdataset shards for the Ray and Spark tests, made from the shared test
images, with every kind of breakage the command line accounts for; and the
command line's own output for them, to compare with.

The folder holds, in shard order:

0. ``00000.tar``: ImageNet photos with captions, a PNG, an uppercase ``.JPG``,
   a member name over 100 bytes (a GNU long name), plus a truncated JPEG, a
   text file named ``.jpg``, an empty ``.jpg`` and a sample with a caption but
   no image;
1. ``00001.tar.gz``: CIFAR-10 photos with class labels, gzipped;
2. ``00002.tar``: more ImageNet photos, as a POSIX (pax) tar with a
   non-ASCII name;
3. ``00003.tar``: a tar cut inside the data of its fifth image;
4. ``00004.tar``: an archive with no members;
5. ``00005.tar.gz``: a gzipped tar whose compressed stream is cut short,
   where what it decompresses to ends at a member boundary (in the header
   that follows a whole sample): that sample fails too.

The samples expected to embed and to fail in the cut shards (3 and 5) are
derived from the truncation rule (``expected_after_cut``), not listed.

Keys are unique across shards, so "every key exactly once" is checkable over
the whole output.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import pyarrow.parquet as pq


def _photos(folder: Path, suffix: str) -> List[Path]:
    return sorted(p for p in folder.rglob(f"*{suffix}") if p.is_file())


def _key(member: str) -> str:
    """A member's sample key: its path up to the first '.' of its file name."""
    folder, slash, name = member.rpartition("/")
    return folder + slash + name.split(".", 1)[0]


def expected_after_cut(plain: bytes, readable: int, gzipped: bool) -> Tuple[List[str], List[str]]:
    """The keys ``seer embed --shards`` embeds and fails, in order, for a shard
    whose (decompressed) tar is ``plain`` but of which only the first
    ``readable`` bytes can be read: a plain tar cut there, or a gzip stream
    cut where it decompresses to that much (``gzipped``: the stream itself is
    cut, its trailer is missing).

    The rule (seer-data's ``read_shard`` with its ``EndWatch``, and
    ``seer.layout.read_shard``): the entries stop where the data does, inside
    a member, in its padding, in the next header, or exactly between two
    members alike. The sample being read then, the one the last header read
    whole belongs to, fails (it may have lost members), and so does the shard
    itself (a row with the empty key). The samples before it stand. Only a
    stream that reaches the end-of-archive marker (its first zero block) is
    whole; a cut gzip stream then still has the shard's row (no trailer).
    """
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as t:
        members = t.getmembers()
    good: List[str] = []
    current: Optional[str] = None
    marker = 0
    for m in members:
        if readable < m.offset_data:
            break  # its header (with any long-name or pax entry before it) is cut or missing
        key = _key(m.name)
        if current is not None and current != key:
            good.append(current)
        current = key
        if readable < m.offset_data + m.size:
            break  # its data is cut
        marker = m.offset_data + -(-m.size // 512) * 512
    else:
        if readable >= marker + 512:
            # The end-of-archive marker was read: every sample stands.
            if current is not None:
                good.append(current)
            return good, [""] if gzipped else []
    return good, ([current] if current is not None else []) + [""]


def decompressed_length(gz: bytes) -> int:
    """How many bytes a gzip stream (maybe cut short) decompresses to."""
    return len(zlib.decompressobj(wbits=31).decompress(gz))


def cut_at_member(gz: bytes, plain: bytes, index: int) -> Optional[bytes]:
    """The shortest prefix of the gzip stream ``gz`` (of ``plain``) that
    decompresses to the start of member ``index``'s header or just past it,
    but not to its whole header: the tar is cut at that member boundary. None
    when the compressed blocks do not end close enough to it."""
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as t:
        member = t.getmembers()[index]
    cut = gzip_prefix_reaching(gz, member.offset)
    return cut if decompressed_length(cut) < member.offset_data else None


def gzip_prefix_reaching(gz: bytes, n: int) -> bytes:
    """The shortest prefix of the gzip stream ``gz`` that decompresses to at
    least ``n`` bytes (the whole stream when it never does)."""
    lo, hi = 0, len(gz)
    while lo < hi:
        mid = (lo + hi) // 2
        if decompressed_length(gz[:mid]) >= n:
            hi = mid
        else:
            lo = mid + 1
    return gz[:lo]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def _tar_bytes(members: Sequence[tuple], gz: bool = False, pax: bool = False) -> bytes:
    buf = io.BytesIO()
    kind = tarfile.PAX_FORMAT if pax else tarfile.GNU_FORMAT
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=kind) as t:
        for name, data in members:
            _add(t, name, data)
    return buf.getvalue()


@dataclass
class Shards:
    folder: Path
    #: Keys of the samples that embed (what the metadata must hold).
    good: Set[str]
    #: Keys of the samples that fail, as the errors must hold them ("" is a
    #: truncated shard's own row: twice, for two such shards).
    bad: List[str]

    @property
    def spec(self) -> str:
        return str(self.folder)


def make_shards(root: Path, shared: Path) -> Shards:
    """Writes the shards described in the module docs into ``root/shards``."""
    folder = root / "shards"
    folder.mkdir(parents=True)
    imagenet = _photos(shared / "imagenet-samples", ".JPEG")
    cifar = _photos(shared / "cifar10-test-subset", ".jpg")
    smoke = shared / "smoke"
    good: Set[str] = set()
    bad: List[str] = []

    def sample(key: str, ext: str, data: bytes, caption: str = "") -> List[tuple]:
        members = [(f"{key}.{ext}", data)]
        if caption:
            members.append((f"{key}.txt", caption.encode()))
        return members

    # 0: photos, other formats, and broken samples.
    members: List[tuple] = []
    for i, p in enumerate(imagenet[:12]):
        key = f"a{i:04d}"
        members += sample(key, "jpg", p.read_bytes(), f"  photo {i}: {p.stem}\n")
        good.add(key)
    members += sample("a-png", "png", (smoke / "skimage" / "chelsea.png").read_bytes(), "a cat")
    members += sample(
        "a-upper", "JPG", (smoke / "rclip-formats" / "black cat sleeping on a chair.JPG").read_bytes()
    )
    # A path over 100 bytes: a GNU long-name member before the header.
    long_key = "a-long/" + "x" * 120 + "/photo"
    members += sample(long_key, "jpg", imagenet[30].read_bytes(), "a long name")
    good |= {"a-png", "a-upper", long_key}
    jpeg = imagenet[20].read_bytes()
    members += sample("a-truncated", "jpg", jpeg[: len(jpeg) * 2 // 5], "cut short")
    members += sample("a-text", "jpg", b"this is not an image, only text\n" * 20)
    members += sample("a-empty", "jpg", b"")
    members.append(("a-caption-only.txt", b"a caption without an image"))
    bad += ["a-truncated", "a-text", "a-empty", "a-caption-only"]
    (folder / "00000.tar").write_bytes(_tar_bytes(members))

    # 1: gzipped CIFAR photos with class labels.
    members = []
    for i, p in enumerate(cifar[::50][:24]):
        key = f"b{i:04d}"
        members += [(f"{key}.jpg", p.read_bytes()), (f"{key}.cls", str(i % 10).encode())]
        good.add(key)
    (folder / "00001.tar.gz").write_bytes(_tar_bytes(members, gz=True))

    # 2: more photos, in a POSIX (pax) tar; a non-ASCII name gets a pax header.
    members = []
    for i, p in enumerate(imagenet[40:56]):
        key = f"c{i:04d}"
        members += sample(key, "jpg", p.read_bytes(), f"photo {p.stem}")
        good.add(key)
    members += sample("c-ünïcödé", "jpeg", imagenet[57].read_bytes(), "ça marche")
    good.add("c-ünïcödé")
    (folder / "00002.tar").write_bytes(_tar_bytes(members, pax=True))

    # 3: cut 100 bytes into the fifth image's data. The tar crate (and so the
    # CLI) reads the four whole samples, the fifth with its first 100 bytes
    # (which fail to decode), then reports the shard as truncated.
    photos = imagenet[60:68]
    members = []
    for i, p in enumerate(photos):
        members.append((f"d{i:04d}.jpg", p.read_bytes()))
    whole = _tar_bytes(members)
    cut = sum(512 + -(-p.stat().st_size // 512) * 512 for p in photos[:4]) + 512 + 100
    (folder / "00003.tar").write_bytes(whole[:cut])
    ok, failed = expected_after_cut(whole, cut, gzipped=False)
    assert (ok, failed) == ([f"d{i:04d}" for i in range(4)], ["d0004", ""]), (ok, failed)
    good |= set(ok)
    bad += failed

    # 4: no members at all.
    (folder / "00004.tar").write_bytes(_tar_bytes([]))

    # 5: a gzip stream cut short about half way, where it decompresses to the
    # start of a member's header: the entries end at a member boundary, and
    # the sample before it, read whole, fails as well as the shard.
    members = []
    for i, p in enumerate(imagenet[80:90]):
        members.append((f"e{i:04d}.jpg", p.read_bytes()))
    gz = _tar_bytes(members, gz=True)
    plain = gzip.decompress(gz)
    tries = [len(members) // 2 + d for d in (0, 1, -1, 2, -2, 3, -3)]
    cut_gz = next(c for c in (cut_at_member(gz, plain, i) for i in tries) if c is not None)
    (folder / "00005.tar.gz").write_bytes(cut_gz)
    ok, failed = expected_after_cut(plain, decompressed_length(cut_gz), gzipped=True)
    assert ok and failed[:-1] == [_key(members[len(ok)][0])] and failed[-1] == "", (ok, failed)
    good |= set(ok)
    bad += failed
    return Shards(folder=folder, good=good, bad=bad)


def cli_embed_shards(
    seer_bin: Path, model: Path, spec: str, out: Path, env: Dict[str, str], *extra: str
) -> List[str]:
    """``seer embed --shards SPEC --out OUT --json``: its JSON lines."""
    done = subprocess.run(
        [str(seer_bin), "embed", "--model", str(model), "--shards", spec, "--out", str(out), "--json",
         *extra],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env),
    )
    if done.returncode != 0:
        raise AssertionError(f"seer embed --shards {spec}: exit {done.returncode}: {done.stderr}")
    return done.stdout.splitlines()


def read_layout(out: Path) -> Dict[int, dict]:
    """Every output shard of ``out``: embeddings, metadata and errors columns. A
    shard without embedded rows (no ``.npy``: it has the ``errors/empty_N``
    marker) has ``npy`` None and empty embeddings and metadata."""
    shards: Dict[int, dict] = {}
    for name in os.listdir(out / "errors"):
        if not (name.startswith("errors_") and name.endswith(".parquet")):
            continue
        n = int(name[len("errors_") : -len(".parquet")])
        errors = pq.read_table(out / "errors" / name).to_pydict()
        npy = out / "img_emb" / f"img_emb_{n}.npy"
        if not npy.exists():
            assert (out / "errors" / f"empty_{n}").is_file(), f"shard {n}: no embeddings, no marker"
            assert not (out / "metadata" / f"metadata_{n}.parquet").exists()
            empty = {"image_path": [], "key": [], "caption": []}
            shards[n] = {"embeddings": np.zeros((0, 0), np.float32), "npy": None, "meta": empty, "errors": errors}
            continue
        shards[n] = {
            "embeddings": np.load(npy),
            "npy": npy.read_bytes(),
            "meta": pq.read_table(out / "metadata" / f"metadata_{n}.parquet").to_pydict(),
            "errors": errors,
        }
    return shards


def all_keys(shards: Dict[int, dict]) -> List[str]:
    return [k for n in sorted(shards) for k in shards[n]["meta"]["key"]]


def all_error_keys(shards: Dict[int, dict]) -> List[str]:
    return [k for n in sorted(shards) for k in shards[n]["errors"]["key"]]


# The fixtures the Ray and Spark tests share (imported by name into each).
# pytest is imported here only: the helpers above need nothing of it.
import pytest  # noqa: E402
from conftest import CLIP_OPENCLIP, SEER_BIN, SHARED, TOKENIZER  # noqa: E402

CLI_ENV = {"SEER_TOKENIZER": str(TOKENIZER), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Shards:
    """The test shards (good, broken and cut samples), made once per module."""
    return make_shards(tmp_path_factory.mktemp("input"), SHARED)


@pytest.fixture(scope="module")
def cli_out(shards: Shards, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `seer embed --shards` writes for them: the reference layout."""
    out = tmp_path_factory.mktemp("cli") / "emb"
    cli_embed_shards(SEER_BIN, CLIP_OPENCLIP, shards.spec, out, CLI_ENV)
    return out
