"""seer on Spark (``local[2]``) gives what ``seer embed --shards`` gives: the
same output shards, also when a task dies mid-way and Spark retries it; the
model is loaded in the Python workers, never on the driver.

Needs ``pyspark`` and Java 17: ``scripts/scale-tests.sh`` installs pyspark.
``SEER_SCALE_TESTS=0`` skips this file.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

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
    pytest.skip("SEER_SCALE_TESTS=0: Spark tests skipped", allow_module_level=True)
pytest.importorskip("pyspark", reason="pyspark is not installed (scripts/scale-tests.sh installs it)")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java (java on PATH or JAVA_HOME)", allow_module_level=True)

import seer  # noqa: E402
import seer.spark  # noqa: E402
from seer import layout  # noqa: E402

MODEL = dict(tokenizer=str(TOKENIZER), offline=True)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    # Two cores; a failed task is tried up to 4 times (local mode's default
    # is once, unlike a cluster's spark.task.maxFailures).
    session = (
        SparkSession.builder.master("local[2,4]")
        .appName("seer-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "8")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def assert_same_shards(got: Path, want: Path, numbers=None) -> None:
    a, b = read_layout(got), read_layout(want)
    numbers = sorted(b) if numbers is None else numbers
    assert sorted(a) == numbers
    for n in numbers:
        assert a[n]["meta"] == b[n]["meta"], f"shard {n}: metadata differs"
        assert same_bits(a[n]["embeddings"], b[n]["embeddings"]), f"shard {n}: embeddings differ"
        assert a[n]["npy"] == b[n]["npy"], f"shard {n}: .npy bytes differ"
        assert a[n]["errors"]["key"] == b[n]["errors"]["key"], f"shard {n}: error keys differ"
        assert a[n]["errors"]["origin"] == b[n]["errors"]["origin"]


class _Forbidden(seer.Model):
    def __init__(self, *args, **kwargs) -> None:  # noqa: D401
        raise AssertionError("a model was loaded on the driver")


def test_spark_pipeline_equals_seer_embed_shards(
    spark, shards: Shards, cli_out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The driver never loads the model: only the Python workers do.
    monkeypatch.setattr(seer, "Model", _Forbidden)
    out = tmp_path / "emb"
    reports = seer.spark.embed_shards(spark, shards.spec, out, CLIP_OPENCLIP, **MODEL)
    assert [(r["number"], r["status"]) for r in reports] == [(n, "written") for n in range(6)]
    assert_same_shards(out, cli_out)
    got = read_layout(out)
    keys = all_keys(got)
    assert len(keys) == len(set(keys)) and set(keys) == shards.good
    assert sorted(all_error_keys(got)) == sorted(shards.bad)
    vectors, meta, _ = layout.load(out)
    assert len(meta.to_pandas()) == vectors.shape[0] == len(shards.good)


def test_a_task_killed_mid_way_is_retried_without_losing_or_repeating_rows(
    spark, shards: Shards, cli_out: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "kill-once"
    marker.touch()

    def kill_once(batches):
        # Dies in its second batch, once (whoever removes the marker first).
        for i, batch in enumerate(batches):
            if i == 1:
                try:
                    os.unlink(marker)
                except FileNotFoundError:
                    pass
                else:
                    os.kill(os.getpid(), signal.SIGKILL)
            yield batch

    df = seer.spark.read_shards(spark, shards.spec)
    df = seer.spark.embed(df, CLIP_OPENCLIP, **MODEL)
    df = df.mapInArrow(kill_once, df.schema)
    out = tmp_path / "emb"
    written = seer.spark.write_clip_retrieval(df, out)
    assert not marker.exists(), "no task was killed"
    # The empty shard (4) has no rows to write: embed_shards writes it.
    assert [w["number"] for w in written] == [0, 1, 2, 3, 5]
    assert_same_shards(out, cli_out, numbers=[0, 1, 2, 3, 5])
    keys = all_keys(read_layout(out))
    assert len(keys) == len(set(keys)) and set(keys) == shards.good


def test_a_rerun_skips_finished_shards(
    spark, shards: Shards, cli_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "emb"
    # Half the shards by the command line (worker 0 of 2), the rest by Spark.
    cli_embed_shards(
        SEER_BIN, CLIP_OPENCLIP, shards.spec, out, CLI_ENV, "--shard-index", "0", "--num-shards", "2"
    )
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*_[0-9].*")}
    reports = seer.spark.embed_shards(spark, shards.spec, out, CLIP_OPENCLIP, **MODEL)
    assert [(r["number"], r["status"]) for r in reports] == [
        (0, "skipped"), (2, "skipped"), (4, "skipped"), (1, "written"), (3, "written"), (5, "written")
    ]
    for p, stamp in stamps.items():
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp, f"{p} was rewritten"
    assert_same_shards(out, cli_out)
    # As if killed while writing shard 3: no metadata, a stray temporary file.
    (out / "metadata" / "metadata_3.parquet").unlink()
    (out / "errors" / ".errors_3.parquet.77.tmp").write_bytes(b"partial")
    reports = seer.spark.embed_shards(spark, shards.spec, out, CLIP_OPENCLIP, **MODEL)
    assert [r["number"] for r in reports if r["status"] == "written"] == [3]
    assert_same_shards(out, cli_out)
    # Nothing left: no model is loaded (this one does not exist).
    reports = seer.spark.embed_shards(spark, shards.spec, out, "/no/such/model")
    assert {r["status"] for r in reports} == {"skipped"}


def test_a_changed_input_list_is_refused(spark, shards: Shards, tmp_path: Path) -> None:
    """A shard added mid-list: refused, as the command line refuses it."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shards.folder / "00000.tar", folder / "a.tar")
    shutil.copy(shards.folder / "00002.tar", folder / "c.tar")
    out = tmp_path / "emb"
    reports = seer.spark.embed_shards(spark, str(folder), out, CLIP_OPENCLIP, **MODEL)
    assert [r["status"] for r in reports] == ["written", "written"]
    assert layout.InputRecord.read(out, 1) == layout.InputRecord.of(folder / "c.tar")
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    shutil.copy(shards.folder / "00001.tar.gz", folder / "b.tar.gz")
    for call in (
        lambda: seer.spark.embed_shards(spark, str(folder), out, CLIP_OPENCLIP, **MODEL),
        lambda: seer.spark.read_shards(spark, str(folder), out_dir=out),
    ):
        with pytest.raises(layout.InputsChangedError, match=r"c\.tar.*b\.tar\.gz"):
            call()
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()} == stamps


def test_embed_a_binary_file_dataframe(spark, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    photos = sorted((SHARED / "imagenet-samples").rglob("*.JPEG"))[200:206]
    for p in photos:
        shutil.copy(p, folder / p.name)
    (folder / "cut.JPEG").write_bytes(photos[0].read_bytes()[:300])
    (folder / "text.JPEG").write_bytes(b"not an image")
    want = cli_embed(CLIP_OPENCLIP, ["--image", *sorted(folder.glob("n*.JPEG"))], tmp_path)
    want_by_name = dict(zip(sorted(p.name for p in folder.glob("n*.JPEG")), want))

    df = spark.read.format("binaryFile").load(str(folder))
    out = seer.spark.embed(df, CLIP_OPENCLIP, image_column="content", key_column="path", **MODEL)
    assert out.schema.simpleString().startswith("struct<key:string,embedding:array<float>,error:string")
    rows = out.select("key", "embedding", "error", "length").collect()
    assert len(rows) == 8
    for r in rows:
        name = os.path.basename(r["key"])
        if name in want_by_name:
            assert r["error"] is None
            assert np.array_equal(np.asarray(r["embedding"], np.float32), want_by_name[name]), name
        else:
            assert r["embedding"] is None and r["error"], name
            assert ("truncated" if name == "cut.JPEG" else "unrecognised") in r["error"]


def test_errors_name_what_is_wrong(spark, tmp_path: Path) -> None:
    df = spark.createDataFrame([("a", "not bytes")], "__key__ string, jpg string")
    with pytest.raises(TypeError, match="column 'jpg' holds string"):
        seer.spark.embed(df, CLIP_OPENCLIP, **MODEL)
    df = spark.createDataFrame([("a", bytearray(b"x"))], "__key__ string, pixels binary")
    with pytest.raises(ValueError, match="no image column.*pixels"):
        seer.spark.embed(df, CLIP_OPENCLIP, **MODEL)
    with pytest.raises(TypeError, match="not a seer.Model"):
        seer.spark.embed(df, seer.Model(CLIP_OPENCLIP, **MODEL), image_column="pixels")
    with pytest.raises(ValueError, match="no column key, embedding, error, __shard__"):
        seer.spark.write_clip_retrieval(df, tmp_path / "out")
    with pytest.raises(layout.ShardSpecError, match="no such file"):
        seer.spark.read_shards(spark, tmp_path / "missing.tar")
