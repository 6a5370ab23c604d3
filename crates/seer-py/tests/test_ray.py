"""seer on Ray Data gives what ``seer embed --shards`` gives: the same output
shards (keys, embeddings bit for bit, errors), also when an actor is killed
mid-run, and a folder either tool can resume.

Needs ``ray[data]`` (and ``pylance`` for the Lance test): ``scripts/scale-tests.sh``
installs them. ``SEER_SCALE_TESTS=0`` skips this file.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from _shards import (  # noqa: F401 (cli_out, shards: fixtures)
    CLI_ENV,
    Shards,
    all_error_keys,
    all_keys,
    cli_embed_shards,
    cli_out,
    read_layout,
    shards,
)
from conftest import CLIP_OPENCLIP, SEER_BIN, SHARED, TOKENIZER, cli_embed, same_bits

if os.environ.get("SEER_SCALE_TESTS", "1") == "0":
    pytest.skip("SEER_SCALE_TESTS=0: Ray tests skipped", allow_module_level=True)
ray = pytest.importorskip("ray", reason="Ray is not installed (scripts/scale-tests.sh installs it)")
pytest.importorskip("ray.data")

import pyarrow as pa  # noqa: E402

import seer  # noqa: E402
import seer.ray  # noqa: E402
from seer import layout  # noqa: E402

MODEL = dict(tokenizer=str(TOKENIZER), offline=True)


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


def embed_shards(shards: Shards, out: Path, **options) -> List[dict]:
    return seer.ray.embed_shards(shards.spec, out, CLIP_OPENCLIP, **MODEL, **options)


def collect(ds) -> pa.Table:
    return pa.concat_tables(ray.get(ds.to_arrow_refs()), promote_options="default")


def assert_same_layout(got: Path, want: Path) -> None:
    """Same output shards: keys, captions, paths row for row; embeddings bit for
    bit (and the .npy bytes); the same failed keys and origins."""
    a, b = read_layout(got), read_layout(want)
    assert sorted(a) == sorted(b)
    for n in b:
        assert a[n]["meta"] == b[n]["meta"], f"shard {n}: metadata differs"
        assert a[n]["npy"] is None or a[n]["embeddings"].dtype == np.float32
        assert same_bits(a[n]["embeddings"], b[n]["embeddings"]), f"shard {n}: embeddings differ"
        assert a[n]["npy"] == b[n]["npy"], f"shard {n}: .npy bytes differ"
        assert a[n]["errors"]["key"] == b[n]["errors"]["key"], f"shard {n}: error keys differ"
        assert a[n]["errors"]["origin"] == b[n]["errors"]["origin"]


def test_the_reader_reads_shards_as_the_command_line_does(shards: Shards, cli_out: Path) -> None:
    cli = read_layout(cli_out)
    for n, path in enumerate(layout.expand_shards(shards.spec)):
        samples = list(layout.read_shard(path))
        # Every sample is in the metadata or the errors, in shard order.
        want = sorted(cli[n]["meta"]["key"] + cli[n]["errors"]["key"])
        assert sorted(s.key for s in samples) == want, path
    assert set(all_keys(cli)) == shards.good
    assert sorted(all_error_keys(cli)) == sorted(shards.bad)


def test_ray_pipeline_equals_seer_embed_shards(
    ray_cluster, shards: Shards, cli_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "emb"
    reports = embed_shards(shards, out, concurrency=2, batch_size=8)
    assert [r["status"] for r in reports] == ["written"] * 6
    assert {r["number"]: (r["rows"], r["errors"]) for r in reports} == {
        n: (len(s["meta"]["key"]), len(s["errors"]["key"])) for n, s in read_layout(cli_out).items()
    }
    assert_same_layout(out, cli_out)
    got = read_layout(out)
    keys = all_keys(got)
    assert len(keys) == len(set(keys)) and set(keys) == shards.good
    assert sorted(all_error_keys(got)) == sorted(shards.bad)
    # The messages say what went wrong, naming the member as the CLI does.
    errors = dict(zip(got[0]["errors"]["key"], got[0]["errors"]["error"]))
    assert errors["a-truncated"].startswith("a-truncated.jpg: ") and "truncated" in errors["a-truncated"]
    assert errors["a-empty"] == "a-empty.jpg: file is empty (0 bytes)"
    assert errors["a-caption-only"] == "the sample has no image"
    assert "truncated" in dict(zip(got[3]["errors"]["key"], got[3]["errors"]["error"]))[""]

    # The folder loads with rows aligned: numpy + pandas.
    vectors, meta, errs = layout.load(out)
    frame = meta.to_pandas()
    assert len(frame) == vectors.shape[0] == len(shards.good)
    row = frame.index[frame["key"] == "a0003"][0]
    cli = read_layout(cli_out)[0]
    want = cli["embeddings"][cli["meta"]["key"].index("a0003")]
    assert np.array_equal(vectors[row], want)
    assert frame.loc[row, "caption"].startswith("photo 3: n")  # trimmed, as the CLI does
    assert frame.loc[row, "image_path"] == str(shards.folder / "00000.tar") + "/a0003.jpg"
    assert sorted(errs.to_pandas()["key"]) == sorted(shards.bad)


def test_float16_output_equals_the_command_line_s(
    ray_cluster, shards: Shards, tmp_path: Path
) -> None:
    cli = tmp_path / "cli16"
    cli_embed_shards(SEER_BIN, CLIP_OPENCLIP, shards.spec, cli, CLI_ENV, "--dtype", "f16")
    out = tmp_path / "ray16"
    embed_shards(shards, out, dtype="float16")
    a, b = read_layout(out), read_layout(cli)
    assert sorted(a) == sorted(b)
    for n in b:
        assert a[n]["npy"] is None or a[n]["embeddings"].dtype == np.float16
        assert a[n]["npy"] == b[n]["npy"], f"shard {n}"


def test_embedder_takes_ray_read_webdataset_output(
    ray_cluster, shards: Shards, cli_out: Path
) -> None:
    # Ray's own reader (undecoded) on the intact shards; one is gzipped.
    paths = [str(shards.folder / "00001.tar.gz"), str(shards.folder / "00002.tar")]
    ds = ray.data.read_webdataset(paths, decoder=None)
    ds = ds.map_batches(
        seer.ray.Embedder,
        fn_constructor_kwargs=dict(model=str(CLIP_OPENCLIP), **MODEL),
        concurrency=1,
        batch_size=10,
        batch_format="pyarrow",
    )
    table = collect(ds)
    cli = read_layout(cli_out)
    want = {
        k: cli[n]["embeddings"][i] for n in (1, 2) for i, k in enumerate(cli[n]["meta"]["key"])
    }
    keys = table.column("key").to_pylist()
    assert sorted(keys) == sorted(want)
    assert table.column("error").null_count == len(keys)
    vectors = layout.embedding_matrix(table.column("embedding"))
    for k, v in zip(keys, vectors):
        assert np.array_equal(v, want[k]), k
    # The webdataset's other columns come along: captions, class labels, the shard.
    assert {"txt", "cls", "__url__"} <= set(table.column_names)


def test_embedder_batch_formats_and_broken_images(cli_out: Path) -> None:
    """Outside Ray: the callable on each batch format Ray hands over."""
    embedder = seer.ray.Embedder(str(CLIP_OPENCLIP), **MODEL)
    photos = sorted((SHARED / "imagenet-samples").rglob("*.JPEG"))[:3]
    good = [p.read_bytes() for p in photos]
    images = [good[0], good[1][:300], b"", None, b"not an image", good[2]]
    keys = ["g0", "cut", "empty", "none", "text", "g2"]
    want = np.asarray(embedder.model.embed_images(photos))
    arrow = pa.table({"jpg": pa.array(images, pa.binary()), "__key__": keys, "txt": ["c"] * 6})
    numpy_batch = {
        "jpg": np.array(images, dtype=object),
        "__key__": np.array(keys, dtype=object),
        "txt": np.array(["c"] * 6, dtype=object),
    }
    for batch in (arrow, numpy_batch, arrow.to_pandas()):
        out = embedder(batch)
        assert out.column_names == ["key", "embedding", "error", "txt"]
        assert out.column("key").to_pylist() == keys
        errors = out.column("error").to_pylist()
        assert [e is None for e in errors] == [True, False, False, False, False, True]
        assert "truncated" in errors[1] and "empty" in errors[2] and "no image" in errors[3]
        vectors = layout.embedding_matrix(out.column("embedding"))
        assert same_bits(vectors[[0, 5]], want[[0, 2]])
        assert out.column("embedding").null_count == 4
    # Decoded arrays (read_images, a webdataset's default decoder) work too.
    from PIL import Image

    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
    out = embedder({"image": np.array(arrays + [None], dtype=object), "path": np.array(["a", "b", "c", "d"])})
    assert out.column("key").to_pylist() == ["a", "b", "c", "d"]
    assert out.column("error").to_pylist()[:3] == [None] * 3
    assert "no image" in out.column("error").to_pylist()[3]
    # Clear errors, naming what is missing.
    with pytest.raises(ValueError, match="no image column.*__key__"):
        embedder(pa.table({"__key__": ["a"], "pixels": pa.array([b"x"], pa.binary())}))
    with pytest.raises(ValueError, match="no column 'photo'"):
        seer.ray.Embedder(str(CLIP_OPENCLIP), image_column="photo", **MODEL)(arrow)
    with pytest.raises(TypeError, match="not a seer.Model"):
        seer.ray.Embedder(embedder.model)


def _killing_embedder(marker: Path, starts: Path) -> type:
    """An Embedder whose actor kills its own process on its second batch, once
    (whoever removes ``marker`` first); every actor start is logged in ``starts``."""

    class KillingEmbedder(seer.ray.Embedder):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            (starts / str(os.getpid())).touch()
            self.calls = 0

        def __call__(self, batch):
            self.calls += 1
            if self.calls == 2:
                try:
                    os.unlink(marker)
                except FileNotFoundError:
                    pass
                else:
                    os.kill(os.getpid(), signal.SIGKILL)
            return super().__call__(batch)

    return KillingEmbedder


def test_an_actor_killed_mid_run_loses_and_repeats_nothing(
    ray_cluster, shards: Shards, cli_out: Path, tmp_path: Path
) -> None:
    marker, starts = tmp_path / "kill-once", tmp_path / "starts"
    marker.touch()
    starts.mkdir()
    out = tmp_path / "emb"
    reports = embed_shards(
        shards,
        out,
        concurrency=2,
        batch_size=4,
        # No max_restarts / max_task_retries given: Ray Data's defaults for
        # actor pools are -1 for both (restart and retry without limit), and
        # this test fails if that ever changes.
        embedder=_killing_embedder(marker, starts),
    )
    assert not marker.exists(), "no actor was killed"
    # Two actors started, and the killed one again.
    assert len(os.listdir(starts)) >= 3, os.listdir(starts)
    assert [r["status"] for r in reports] == ["written"] * 6
    got = read_layout(out)
    keys = all_keys(got)
    assert len(keys) == len(set(keys)), "a key was written twice"
    assert set(keys) == shards.good
    assert sorted(all_error_keys(got)) == sorted(shards.bad)
    assert_same_layout(out, cli_out)


def test_a_rerun_skips_finished_shards_either_tool(
    ray_cluster, shards: Shards, cli_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "emb"
    embed_shards(shards, out)
    files = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*_[0-9].*")}
    # As if killed while writing shard 2: embeddings rewritten, no metadata yet,
    # a temporary file left behind.
    (out / "metadata" / "metadata_2.parquet").unlink()
    (out / "img_emb" / "img_emb_2.npy").write_bytes(b"garbage")
    (out / "img_emb" / ".img_emb_2.npy.1234.tmp").write_bytes(b"partial")
    reports = embed_shards(shards, out)
    assert [(r["number"], r["status"]) for r in reports] == [
        (0, "skipped"), (1, "skipped"), (3, "skipped"), (4, "skipped"), (5, "skipped"), (2, "written")
    ]
    for p, stamp in files.items():
        if p.name.endswith(("_2.npy", "_2.parquet", "_2.json")):
            continue  # shard 2 and its input record are written again
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp, f"{p} was rewritten"
    assert_same_layout(out, cli_out)

    # Nothing left: the model is not even loaded.
    reports = seer.ray.embed_shards(shards.spec, out, "/no/such/model")
    assert {r["status"] for r in reports} == {"skipped"}

    # The command line finishes a folder Ray started...
    for n in (1, 3):
        for f in layout.shard_paths(out, n):
            os.unlink(f)
    lines = cli_embed_shards(SEER_BIN, CLIP_OPENCLIP, shards.spec, out, CLI_ENV)
    assert [('"status":"written"' in l) for l in lines].count(True) == 2
    assert_same_layout(out, cli_out)
    # ...and Ray finishes one the command line started (worker 0 of 2).
    mixed = tmp_path / "mixed"
    cli_embed_shards(
        SEER_BIN, CLIP_OPENCLIP, shards.spec, mixed, CLI_ENV, "--shard-index", "0", "--num-shards", "2"
    )
    reports = embed_shards(shards, mixed)
    assert sorted(r["number"] for r in reports if r["status"] == "written") == [1, 3, 5]
    assert_same_layout(mixed, cli_out)


def test_a_changed_input_list_is_refused(ray_cluster, shards: Shards, tmp_path: Path) -> None:
    """A shard added mid-list shifts every position after it: a rerun refuses
    the folder (the command line's rule) instead of skipping the new shard and
    embedding a finished one twice."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shards.folder / "00000.tar", folder / "a.tar")
    shutil.copy(shards.folder / "00002.tar", folder / "c.tar")
    out = tmp_path / "emb"
    reports = seer.ray.embed_shards(str(folder), out, CLIP_OPENCLIP, **MODEL)
    assert [r["status"] for r in reports] == ["written", "written"]
    assert layout.InputRecord.read(out, 1) == layout.InputRecord.of(folder / "c.tar")
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    shutil.copy(shards.folder / "00001.tar.gz", folder / "b.tar.gz")
    for call in (
        lambda: seer.ray.embed_shards(str(folder), out, CLIP_OPENCLIP, **MODEL),
        lambda: seer.ray.read(str(folder), out_dir=out),
    ):
        with pytest.raises(layout.InputsChangedError, match=r"c\.tar.*b\.tar\.gz"):
            call()
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()} == stamps
    # The list as it was: nothing to do.
    (folder / "b.tar.gz").unlink()
    reports = seer.ray.embed_shards(str(folder), out, "/no/such/model")
    assert [r["status"] for r in reports] == ["skipped", "skipped"]


def test_write_lance(ray_cluster, shards: Shards, cli_out: Path, tmp_path: Path) -> None:
    lance = pytest.importorskip("lance", reason="pylance is not installed")
    ds = seer.ray.read(shards.spec).map_batches(
        seer.ray.Embedder,
        fn_constructor_kwargs=dict(model=str(CLIP_OPENCLIP), **MODEL),
        concurrency=1,
        batch_format="pyarrow",
    )
    uri = str(tmp_path / "emb.lance")
    seer.ray.write_lance(ds, uri)
    table = lance.dataset(uri).to_table()
    assert "__shard__" not in table.column_names
    keys = table.column("key").to_pylist()
    assert sorted(keys) == sorted([*shards.good, *shards.bad])
    cli = read_layout(cli_out)
    want: Dict[str, np.ndarray] = {
        k: s["embeddings"][i] for s in cli.values() for i, k in enumerate(s["meta"]["key"])
    }
    vectors = layout.embedding_matrix(table.column("embedding"))
    errors = table.column("error").to_pylist()
    for k, v, e in zip(keys, vectors, errors):
        if k in want:
            assert e is None and np.array_equal(v, want[k]), k
        else:
            assert e is not None and np.isnan(v).all(), k


def test_image_folders_and_parquet(ray_cluster, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    photos = sorted((SHARED / "imagenet-samples").rglob("*.JPEG"))[100:105]
    for p in photos[:3]:
        shutil.copy(p, folder / p.name)
    for p in photos[3:]:
        shutil.copy(p, folder / "sub" / p.name)
    (folder / "broken.jpg").write_bytes(photos[0].read_bytes()[:200])
    files = sorted(str(p) for p in folder.rglob("*.JPEG"))
    want = cli_embed(CLIP_OPENCLIP, ["--image", *files], tmp_path)
    want_by_path = dict(zip(files, want))

    out = tmp_path / "emb"
    reports = seer.ray.embed_shards(folder, out, CLIP_OPENCLIP, files_per_shard=4, **MODEL)
    assert [(r["number"], r["rows"], r["errors"]) for r in reports] == [(0, 3, 1), (1, 2, 0)]
    vectors, meta, errors = layout.load(out)
    paths = meta.column("image_path").to_pylist()
    assert sorted(paths) == files
    for p, v in zip(paths, vectors):
        assert np.array_equal(v, want_by_path[p]), p
    assert errors.column("key").to_pylist() == [str(folder / "broken.jpg")]

    # Parquet with an image column: each file an input shard.
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"key": ["p0", "p1", "p2"], "jpg": [Path(f).read_bytes() for f in files[:3]]}),
        tmp_path / "part-0.parquet",
    )
    ds = seer.ray.read(tmp_path / "part-0.parquet").map_batches(
        seer.ray.Embedder, fn_constructor_kwargs=dict(model=str(CLIP_OPENCLIP), **MODEL),
        concurrency=1, batch_format="pyarrow",
    )
    table = collect(ds).sort_by("key")
    assert table.column("key").to_pylist() == ["p0", "p1", "p2"]
    assert same_bits(layout.embedding_matrix(table.column("embedding")), want[:3])


def test_errors_name_the_input(ray_cluster, tmp_path: Path) -> None:
    with pytest.raises(layout.ShardSpecError, match="/no/such/shards.*no such file"):
        seer.ray.read("/no/such/shards/{0000..0003}.tar")
    (tmp_path / "empty").mkdir()
    with pytest.raises(layout.ShardSpecError, match="empty: no webdataset shards"):
        seer.ray.read(tmp_path / "empty")
    with pytest.raises(layout.ShardSpecError, match="bad brace range"):
        layout.expand_shards(str(tmp_path / "{3..1}.tar"))
    plain = ray.data.from_items([{"key": "a", "embedding": [1.0], "error": None}])
    with pytest.raises(ValueError, match="no column __shard__"):
        seer.ray.write_clip_retrieval(plain, tmp_path / "out")


def test_autofaiss_s_reader_reads_the_layout(shards: Shards, cli_out: Path) -> None:
    """embedding-reader (what autofaiss and clip-retrieval read embeddings with)
    takes the folder as written, empty shards included, rows aligned."""
    er = pytest.importorskip("embedding_reader", reason="embedding-reader is not installed")
    reader = er.EmbeddingReader(
        embeddings_folder=str(cli_out / "img_emb"),
        file_format="parquet_npy",
        metadata_folder=str(cli_out / "metadata"),
        meta_columns=["key", "image_path"],
    )
    assert reader.count == len(shards.good)
    want = {}
    for s in read_layout(cli_out).values():
        for key, vector in zip(s["meta"]["key"], s["embeddings"]):
            want[key] = vector
    seen = []
    for vectors, meta in reader(batch_size=7, start=0, end=reader.count, show_progress=False):
        for vector, key in zip(vectors, meta["key"]):
            assert np.array_equal(vector, want[key]), key
            seen.append(key)
    assert sorted(seen) == sorted(want)
