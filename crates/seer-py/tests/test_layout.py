"""The clip-retrieval layout helpers (``seer.layout``) without Ray or Spark:
webdataset shards read as ``seer embed --shards`` reads them, truncated ones
included, and an output folder resumed by the command line's rules (a
finished output shard counts only when it came from the input now at its
position; ``inputs/input_N.json`` is the command line's record).

The pipeline here is what ``seer.ray.embed_shards`` and
``seer.spark.embed_shards`` run, in one process: ``plan_unfinished``, then per
input shard ``shard_tables`` -> ``embed_table`` -> ``write_embedded_shard``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _shards import decompressed_length, expected_after_cut, gzip_prefix_reaching
from conftest import CLIP_OPENCLIP, SEER_BIN, SHARED, TOKENIZER

import seer
from seer import layout

PHOTOS = sorted((SHARED / "imagenet-samples").rglob("*.JPEG"))


# ---------------------------------------------------------------------------
# Helpers: tar fixtures, the Python pipeline, the command line.


def _members(keys: Sequence[str], first_photo: int = 0) -> List[Tuple[str, bytes]]:
    """Each key a sample: a photo and a caption."""
    out = []
    for i, key in enumerate(keys):
        out.append((f"{key}.jpg", PHOTOS[first_photo + i].read_bytes()))
        out.append((f"{key}.txt", f"caption of {key}".encode()))
    return out


def _tar(members: Sequence[Tuple[str, bytes]], mode: str = "w", fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _gnu_tar(members: Sequence[Tuple[str, bytes]], folder: Path) -> bytes:
    """The same members written by GNU tar (in the order given)."""
    src = folder / "gnu-src"
    src.mkdir()
    for name, data in members:
        (src / name).write_bytes(data)
    out = folder / "gnu.tar"
    subprocess.run(
        ["tar", "-cf", str(out), "-C", str(src), *[n for n, _ in members]], check=True
    )
    return out.read_bytes()


def _ends(tar: bytes) -> List[int]:
    """The offset where each member's data (padding included) ends."""
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as t:
        return [m.offset_data + -(-m.size // 512) * 512 for m in t.getmembers()]


def _rows(path: Path) -> List[Tuple[str, Optional[str]]]:
    """``(key, error)`` of each sample read, in order."""
    return [(s.key, s.error) for s in layout.read_shard(path)]


def _keys_and_failed(rows: List[Tuple[str, Optional[str]]]) -> Tuple[List[str], List[str]]:
    return [k for k, e in rows if e is None], [k for k, e in rows if e is not None]


def python_embed_shards(source, out: Path, model: seer.Model, **options) -> List[dict]:
    """``seer.ray.embed_shards`` without Ray: the same layout functions, in order."""
    plan, todo, reports = layout.plan_unfinished(source, out, **options)
    for shard in todo:
        tables = [layout.embed_table(model, t) for t in layout.shard_tables(shard)]
        table = pa.concat_tables(tables) if tables else None
        got = layout.write_embedded_shard(out, shard.number, table, dim=model.dim)
        reports.append(layout.shard_report(shard.name, shard.number, "written", got["rows"], got["errors"]))
    return reports


def cli(spec: str, out: Path) -> subprocess.CompletedProcess:
    """``seer embed --shards SPEC --out OUT --json`` (its exit status is the caller's to check)."""
    if not SEER_BIN.exists():
        pytest.fail(f"{SEER_BIN} not found: build it with `cargo build --release -p seer-cli`")
    env = dict(os.environ, SEER_TOKENIZER=str(TOKENIZER), HF_HUB_OFFLINE="1")
    return subprocess.run(
        [str(SEER_BIN), "embed", "--model", str(CLIP_OPENCLIP), "--shards", spec, "--out", str(out),
         "--json"],
        capture_output=True,
        text=True,
        env=env,
    )


def layout_rows(out: Path) -> Dict[int, dict]:
    """Per output shard: its metadata keys and its errors' keys and origins."""
    shards: Dict[int, dict] = {}
    for name in sorted(os.listdir(out / "errors")):
        if not (name.startswith("errors_") and name.endswith(".parquet")):
            continue
        n = int(name[len("errors_") : -len(".parquet")])
        errors = pq.read_table(out / "errors" / name).to_pydict()
        meta_path = out / "metadata" / f"metadata_{n}.parquet"
        meta = pq.read_table(meta_path).to_pydict() if meta_path.exists() else {"key": [], "image_path": []}
        shards[n] = {
            "keys": meta["key"],
            "paths": meta["image_path"],
            "error_keys": errors["key"],
            "origins": errors["origin"],
        }
    return shards


def snapshot(out: Path) -> Dict[str, Tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------
# Bug 2: a tar that ends without its end-of-archive marker is truncated.

WRITERS = ["tarfile-w", "tarfile-w|", "tarfile-pax", "gnu-tar", "tarfile-w|gz", "tarfile-w:gz"]


def _written_by(writer: str, members: Sequence[Tuple[str, bytes]], folder: Path) -> Tuple[bytes, bool]:
    """``(file bytes, gzipped)`` of a shard of ``members`` as ``writer`` writes it."""
    if writer == "gnu-tar":
        return _gnu_tar(members, folder), False
    if writer == "tarfile-pax":
        return _tar(members, "w", tarfile.PAX_FORMAT), False
    mode = writer[len("tarfile-") :]
    return _tar(members, mode), mode.endswith("gz")


@pytest.mark.parametrize("writer", WRITERS)
def test_a_shard_without_its_end_of_archive_marker_is_truncated(writer: str, tmp_path: Path) -> None:
    members = _members(["k0", "k1", "k2"])
    data, gzipped = _written_by(writer, members, tmp_path)
    suffix = ".tar.gz" if gzipped else ".tar"
    whole = tmp_path / f"whole{suffix}"
    whole.write_bytes(data)
    # Read whole: every sample, no error row.
    assert _rows(whole) == [("k0", None), ("k1", None), ("k2", None)]

    plain = gzip.decompress(data) if gzipped else data
    ends = _ends(plain)
    pack = gzip.compress if gzipped else (lambda b: b)
    cases = {
        # Cut right after the last member: only the end-of-archive marker is missing.
        "no-marker": (ends[-1], ["k0", "k1"], ["k2", ""]),
        # Cut between two samples (after k1's caption): k1 may have lost members too.
        "between-samples": (ends[3], ["k0"], ["k1", ""]),
        # Cut between two members of one sample (after k1's photo).
        "mid-sample": (ends[2], ["k0"], ["k1", ""]),
        # Cut inside k1's photo.
        "mid-member": (ends[1] + 512 + 100, ["k0"], ["k1", ""]),
        # Cut inside the end-of-archive marker's first block.
        "half-marker": (ends[-1] + 200, ["k0", "k1"], ["k2", ""]),
    }
    for name, (cut, good, failed) in cases.items():
        shard = tmp_path / f"{name}{suffix}"
        shard.write_bytes(pack(plain[:cut]))
        rows = _rows(shard)
        assert _keys_and_failed(rows) == (good, failed), (name, rows)
        errors = dict(rows)
        assert "truncated" in errors[""], (name, errors)
        # The shard's own row is last, with the shard as its origin.
        last = list(layout.read_shard(shard))[-1]
        assert (last.key, last.origin) == ("", str(shard))


def test_the_shards_fixture_expects_what_a_cut_shard_reads_wherever_the_cut_falls(tmp_path: Path) -> None:
    """``_shards.expected_after_cut``, which the Ray and Spark tests take the
    expected keys of their cut shards from, gives what the reader reads for a
    cut anywhere: in a header, exactly between two members or two samples, in
    a member's data or its padding, in the end-of-archive marker; in a plain
    tar, and in a gzip stream cut short (whatever it decompresses to)."""
    plain = _tar(_members(["k0", "k1", "k2"]))
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as t:
        infos = t.getmembers()
    marker = _ends(plain)[-1]
    cuts = {0, 100, marker, marker + 200, marker + 511, marker + 512, marker + 1024, len(plain)}
    for m in infos:
        data_end = m.offset_data + m.size
        padded = m.offset_data + -(-m.size // 512) * 512
        cuts |= {m.offset, m.offset + 1, m.offset + 511, m.offset_data, m.offset_data + 1}
        cuts |= {data_end - 1, data_end, data_end + 1, padded - 1, padded}
    cuts = {c for c in cuts if 0 <= c <= len(plain)}
    gz = gzip.compress(plain, mtime=0)
    gz_cuts = {gzip_prefix_reaching(gz, c) for c in cuts} | {gz[: len(gz) // 2], gz[:-8], gz[:-3]}
    shapes = set()
    for i, (data, gzipped) in enumerate(
        [(plain[:c], False) for c in sorted(cuts)] + [(c, True) for c in sorted(gz_cuts, key=len)]
    ):
        shard = tmp_path / (f"{i}.tar.gz" if gzipped else f"{i}.tar")
        shard.write_bytes(data)
        readable = decompressed_length(data) if gzipped else len(data)
        want = expected_after_cut(plain, readable, gzipped)
        rows = _rows(shard)
        assert _keys_and_failed(rows) == want, (shard.name, readable, rows, want)
        shapes.add((gzipped, tuple(want[0]), tuple(want[1])))
    # Both kinds of stream were cut before, inside and after every sample.
    for gzipped in (False, True):
        for good in ([], ["k0"], ["k0", "k1"]):
            assert (gzipped, tuple(good), (f"k{len(good)}", "")) in shapes, (gzipped, good, shapes)
    # A gzip stream cut in its trailer only: the samples stand, the shard's row says so.
    assert (True, ("k0", "k1", "k2"), ("",)) in shapes


def test_an_empty_file_is_an_error_row(tmp_path: Path) -> None:
    for name in ("empty.tar", "empty.tar.gz"):
        shard = tmp_path / name
        shard.write_bytes(b"")
        rows = list(layout.read_shard(shard))
        assert [(s.key, s.origin) for s in rows] == [("", str(shard))], name
        assert rows[0].error
    # An archive with no members (only the marker) is whole: no rows at all.
    (tmp_path / "no-members.tar").write_bytes(_tar([]))
    assert _rows(tmp_path / "no-members.tar") == []


def test_gzip_trailers_are_checked_and_multi_member_gzip_read_whole(tmp_path: Path) -> None:
    plain = _tar(_members(["k0", "k1", "k2"]))
    # bgzip-like: several gzip members, concatenated, split mid-member.
    multi = tmp_path / "multi.tar.gz"
    multi.write_bytes(gzip.compress(plain[:3000]) + gzip.compress(plain[3000:9000]) + gzip.compress(plain[9000:]))
    assert _rows(multi) == [("k0", None), ("k1", None), ("k2", None)]
    gz = gzip.compress(plain)
    # The trailer (CRC-32 and length) cut off, or its checksum wrong: the
    # samples were read whole and stand; the shard's row says the file is damaged.
    for name, data in {
        "no-trailer": gz[:-8],
        "half-trailer": gz[:-3],
        "bad-crc": gz[:-8] + bytes(b ^ 0xFF for b in gz[-8:-4]) + gz[-4:],
    }.items():
        shard = tmp_path / f"{name}.tar.gz"
        shard.write_bytes(data)
        rows = _rows(shard)
        assert [k for k, _ in rows] == ["k0", "k1", "k2", ""], (name, rows)
        assert [e is None for _, e in rows] == [True, True, True, False], (name, rows)
        assert "gzip trailer" in rows[-1][1]


def test_the_cifar10_shards_read_whole_and_a_cut_trailer_is_reported(tmp_path: Path) -> None:
    folder = SHARED / "cifar10-wds"
    shards = sorted(folder.glob("*.tar.gz"))
    assert shards, f"no shards in {folder}"
    for path in shards[:2]:
        samples = list(layout.read_shard(path))
        assert len(samples) == 10_000, path
        assert all(s.error is None and s.image is not None and s.cls is not None for s in samples), path
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(shards[0].read_bytes()[:-4])
    samples = list(layout.read_shard(cut))
    assert len(samples) == 10_001
    assert all(s.error is None for s in samples[:-1])
    assert samples[-1].key == "" and "gzip trailer" in samples[-1].error


@pytest.fixture(scope="module")
def model() -> seer.Model:
    return seer.Model(CLIP_OPENCLIP, tokenizer=TOKENIZER, offline=True)


def test_truncated_shards_give_the_command_line_s_rows(model: seer.Model, tmp_path: Path) -> None:
    """A folder of shards whole and broken every way: the Python pipeline puts
    the same keys in the metadata and the errors as `seer embed --shards`."""
    folder = tmp_path / "shards"
    folder.mkdir()
    plain = _tar(_members(["a0", "a1", "a2", "a3"]))
    ends = _ends(plain)
    gz = gzip.compress(plain)
    files = {
        "00-whole.tar": plain,
        "01-no-marker.tar": plain[: ends[-1]],
        "02-between-samples.tar": plain[: ends[3]],
        "03-mid-sample.tar": plain[: ends[2]],
        "04-mid-member.tar": plain[: ends[1] + 512 + 100],
        "05-half-block.tar": plain[: ends[3] + 256],
        "06-empty.tar": b"",
        "07-no-members.tar": _tar([]),
        "08-no-trailer.tar.gz": gz[:-4],
        "09-cut-stream.tar.gz": gz[: len(gz) // 2],
        "10-multi.tar.gz": gzip.compress(plain[:5000]) + gzip.compress(plain[5000:]),
        "11-gz-no-marker.tar.gz": gzip.compress(plain[: ends[-1]]),
        "12-empty.tar.gz": b"",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    done = cli(str(folder), tmp_path / "cli")
    assert done.returncode == 0, done.stderr
    python_embed_shards(str(folder), tmp_path / "py", model)
    want, got = layout_rows(tmp_path / "cli"), layout_rows(tmp_path / "py")
    assert sorted(got) == sorted(want) == list(range(len(files)))
    for n in want:
        assert got[n] == want[n], (n, sorted(files)[n], got[n], want[n])
    # What the broken shards give, spelled out.
    assert want[0] == {**want[0], "keys": ["a0", "a1", "a2", "a3"], "error_keys": []}
    assert (want[1]["keys"], want[1]["error_keys"]) == (["a0", "a1", "a2"], ["a3", ""])
    assert (want[2]["keys"], want[2]["error_keys"]) == (["a0"], ["a1", ""])
    assert (want[6]["keys"], want[6]["error_keys"]) == ([], [""])
    assert (want[7]["keys"], want[7]["error_keys"]) == ([], [])
    assert (want[8]["keys"], want[8]["error_keys"]) == (["a0", "a1", "a2", "a3"], [""])
    assert (want[10]["keys"], want[10]["error_keys"]) == (["a0", "a1", "a2", "a3"], [])


# ---------------------------------------------------------------------------
# Bug 1: a finished output shard is skipped only when it came from the input
# now at its position.


def _shard_folder(root: Path, names: Sequence[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (root / name).write_bytes(_tar(_members([f"{Path(name).stem}-{j}" for j in range(2)], 2 * i)))
    return root


def test_a_shard_added_mid_list_is_refused_not_skipped(model: seer.Model, tmp_path: Path) -> None:
    folder = _shard_folder(tmp_path / "shards", ["000.tar", "002.tar"])
    out = tmp_path / "emb"
    reports = python_embed_shards(str(folder), out, model)
    assert [(r["number"], r["status"]) for r in reports] == [(0, "written"), (1, "written")]
    # A shard that sorts between the two: every position after it shifts.
    (folder / "001.tar").write_bytes(_tar(_members(["001-0", "001-1"], 10)))
    before = snapshot(out)
    with pytest.raises(layout.InputsChangedError) as caught:
        python_embed_shards(str(folder), out, model)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert f"output shard 1 was written from {folder / '002.tar'}" in message, message
    assert f"input shard 1 is now {folder / '001.tar'}" in message, message
    assert str(out) in message
    # Refused before anything was written.
    assert snapshot(out) == before
    assert not (out / "errors" / "errors_2.parquet").exists()
    # The same for the readers of Ray and Spark (plan_unfinished underneath).
    with pytest.raises(layout.InputsChangedError):
        layout.plan_unfinished(str(folder), out)
    # The list as it was resumes: nothing to do.
    (folder / "001.tar").unlink()
    reports = python_embed_shards(str(folder), out, model)
    assert [r["status"] for r in reports] == ["skipped", "skipped"]


def test_the_record_is_the_command_line_s_and_either_tool_resumes_or_refuses(
    model: seer.Model, tmp_path: Path
) -> None:
    folder = _shard_folder(tmp_path / "shards", ["000.tar", "002.tar", "004.tar"])
    spec = str(folder)
    py, by_cli = tmp_path / "py", tmp_path / "cli"
    python_embed_shards(spec, py, model)
    assert cli(spec, by_cli).returncode == 0
    # The same records, field for field, in the command line's JSON.
    for n in range(3):
        a = json.loads((py / "inputs" / f"input_{n}.json").read_text())
        b = json.loads((by_cli / "inputs" / f"input_{n}.json").read_text())
        assert a == b, n
        assert set(a) == {"path", "canonical", "name", "bytes"}
        assert a["canonical"] == os.path.realpath(a["path"])
    assert layout.InputRecord.read(py, 1) == layout.InputRecord.of(folder / "002.tar")

    # Unchanged: each tool skips every shard of the other's folder.
    assert [r["status"] for r in python_embed_shards(spec, by_cli, model)] == ["skipped"] * 3
    done = cli(spec, py)
    assert done.returncode == 0, done.stderr
    assert [json.loads(l)["status"] for l in done.stdout.splitlines()] == ["skipped"] * 3
    # Shard 2 unfinished (killed before its metadata): either tool redoes just it.
    (py / "metadata" / "metadata_2.parquet").unlink()
    done = cli(spec, py)
    assert [json.loads(l)["status"] for l in done.stdout.splitlines()] == ["skipped", "skipped", "written"]

    # A shard added mid-list: both refuse both folders, naming both inputs.
    (folder / "001.tar").write_bytes(_tar(_members(["001-0"], 12)))
    for out in (py, by_cli):
        done = cli(spec, out)
        assert done.returncode == 2, done.stderr
        assert "002.tar" in done.stderr and "001.tar" in done.stderr, done.stderr
        with pytest.raises(layout.InputsChangedError, match="002.tar.*001.tar"):
            layout.plan_unfinished(spec, out)

    # A damaged record is an error, not a guess.
    (folder / "001.tar").unlink()
    (py / "inputs" / "input_1.json").write_text('{"path": 3}')
    with pytest.raises(ValueError, match="not a record of the input"):
        layout.plan_unfinished(spec, py)
    # Output shards written before seer kept records are taken as they are.
    shutil.rmtree(py / "inputs")
    (folder / "001.tar").write_bytes(_tar(_members(["001-0"], 12)))
    plan, todo, skipped = layout.plan_unfinished(spec, py)
    assert [s.number for s in todo] == [3]
    assert [r["number"] for r in skipped] == [0, 1, 2]
    # ...and the shard left to do got its record, before any of its files.
    assert layout.InputRecord.read(py, 3) == layout.InputRecord.of(folder / "004.tar")
    assert not (py / "errors" / "errors_3.parquet").exists()


def test_an_input_is_known_by_its_real_path_or_its_name_size_and_folder(tmp_path: Path) -> None:
    def record(path: str, size: int) -> "layout.InputRecord":
        return layout.InputRecord(path, path, os.path.basename(path), size)

    was = record("/data/laion/00001.tar", 10240)
    # The same file, grown or shrunk (a download completed): the same input.
    assert was.same_input(record("/data/laion/00001.tar", 20480))
    # The collection moved or mounted elsewhere.
    assert was.same_input(record("/mnt/x/laion/00001.tar", 10240))
    # Another shard of the list, or a namesake in another folder.
    assert not was.same_input(record("/data/laion/00002.tar", 10240))
    assert not was.same_input(record("/data/other/00001.tar", 10240))
    assert not was.same_input(record("/mnt/x/laion/00001.tar", 512))

    # On disk: a moved collection resumes; a namesake collection is refused.
    folder = _shard_folder(tmp_path / "a" / "laion", ["000.tar", "001.tar"])
    out = tmp_path / "emb"
    layout.plan_unfinished(str(folder), out)
    for n in range(2):
        layout.write_embedded_shard(out, n, None)
    moved = tmp_path / "b" / "laion"
    shutil.move(str(folder), moved)
    plan, todo, skipped = layout.plan_unfinished(str(moved), out)
    assert todo == [] and len(skipped) == 2
    other = tmp_path / "b" / "other"
    shutil.copytree(moved, other)
    with pytest.raises(layout.InputsChangedError, match="other"):
        layout.plan_unfinished(str(other), out)


def test_an_image_folder_that_gained_a_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "c.jpg", "e.jpg", "g.jpg"):
        shutil.copy(PHOTOS[0], folder / name)
    out = tmp_path / "emb"
    plan, todo, _ = layout.plan_unfinished(str(folder), out, files_per_shard=2)
    assert [s.paths for s in todo] == [
        (str(folder / "a.jpg"), str(folder / "c.jpg")),
        (str(folder / "e.jpg"), str(folder / "g.jpg")),
    ]
    for n in range(2):
        layout.write_embedded_shard(out, n, None)
    assert layout.plan_unfinished(str(folder), out, files_per_shard=2)[1] == []
    # A file that sorts into the first run shifts the second.
    shutil.copy(PHOTOS[1], folder / "b.jpg")
    with pytest.raises(layout.InputsChangedError, match="output shard 0"):
        layout.plan_unfinished(str(folder), out, files_per_shard=2)
