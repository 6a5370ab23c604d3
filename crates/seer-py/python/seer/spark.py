"""seer on Spark: embed a DataFrame of encoded images with ``mapInArrow``, or
webdataset shards into the clip-retrieval layout of ``seer embed --shards``.

>>> import seer.spark
>>> seer.spark.embed_shards(spark, "data/{00000..00999}.tar", "emb/", model="ViT-B-32")

>>> df = spark.read.format("binaryFile").load("photos/")         # path, content, ...
>>> out = seer.spark.embed(df, model="ViT-B-32", image_column="content", key_column="path")

The model is never pickled: :func:`embed` ships its name, and each Python
worker process loads it on first use and keeps it for the tasks it runs after
(Spark reuses Python workers by default). Every image gives a row: a corrupt
or truncated one has ``error`` set and a null ``embedding``; nothing fails the
task for a bad image.

Spark is imported when these are used, not when ``seer.spark`` is imported.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from . import layout
from .layout import COUNT, INDEX, SHARD, InputShard

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["embed", "embed_shards", "read_shards", "write_clip_retrieval"]

PathLike = Union[str, "os.PathLike[str]"]

#: Rows embedded per call inside a Spark batch (Spark hands up to
#: ``spark.sql.execution.arrow.maxRecordsPerBatch`` rows at once).
ROWS_PER_CALL = 256

# Models loaded by this Python worker process, by what was asked for.
_MODELS: Dict[Tuple, Any] = {}


def _model_key(model: Any, device: str, precision: str, options: Dict[str, Any]) -> Tuple:
    from . import Model

    if isinstance(model, Model):
        raise TypeError(
            "pass the model's name or path, not a seer.Model: a model is not sent to Spark "
            "workers, each Python worker loads its own"
        )
    return (os.fspath(model), device, precision, tuple(sorted(options.items())))


def _worker_model(key: Tuple, threads: Optional[int]) -> Any:
    """This process's model for ``key``, loaded on first use."""
    model = _MODELS.get(key)
    if model is None:
        from . import Model

        if threads is None:
            threads = _task_cpus()
        if threads is not None and "RAYON_NUM_THREADS" not in os.environ:
            # Read when seer's worker threads start (the first embedding call
            # of this process).
            os.environ["RAYON_NUM_THREADS"] = str(max(1, int(threads)))
        name, device, precision, options = key
        model = _MODELS[key] = Model(name, device, precision, **dict(options))
    return model


def _task_cpus() -> Optional[int]:
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        return int(ctx.cpus()) if ctx is not None else None
    except Exception:  # noqa: BLE001 - an older Spark, or not in a task
        return None


def _spark_type(kind: "pa.DataType") -> Any:
    from pyspark.sql import types as T

    import pyarrow as pa

    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return T.StringType()
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return T.BinaryType()
    if pa.types.is_int64(kind):
        return T.LongType()
    raise TypeError(f"no Spark type for {kind}")


def _sample_struct() -> Any:
    from pyspark.sql import types as T

    return T.StructType(
        [T.StructField(f.name, _spark_type(f.type), True) for f in layout.sample_schema()]
    )


def read_shards(
    spark: "SparkSession",
    source: Union[PathLike, Sequence[PathLike]],
    *,
    out_dir: Optional[PathLike] = None,
    image_column: Optional[str] = None,
    key_column: Optional[str] = None,
    caption_column: Optional[str] = None,
    files_per_shard: int = 10_000,
    rows_per_block: int = 256,
) -> "DataFrame":
    """The samples of ``source`` as a DataFrame, one partition per input shard.

    ``source`` and the columns are those of :func:`seer.ray.read`: webdataset
    shards read exactly as ``seer embed --shards`` reads them (a truncated shard
    gives what it holds plus a row with an error), parquet files, or an image
    folder; the images stay undecoded. With ``out_dir``, input shards whose
    output is complete there are left out, the others get their input record
    there (``inputs/input_N.json``), and a changed input list is refused with
    :class:`seer.layout.InputsChangedError`, as :func:`seer.ray.read` does.
    """
    if out_dir is not None:
        # Finished shards are left out (and a changed input list refused);
        # the others get their input records before any of their files.
        _, plan, _ = layout.plan_unfinished(source, out_dir, files_per_shard=files_per_shard)
    else:
        plan = layout.plan_shards(source, files_per_shard=files_per_shard)
    return _read_plan(
        spark,
        plan,
        dict(
            image_column=image_column,
            key_column=key_column,
            caption_column=caption_column,
            rows_per_block=rows_per_block,
        ),
    )


def _read_plan(spark: "SparkSession", plan: Sequence[InputShard], options: Dict[str, Any]) -> "DataFrame":
    rows = [(s.number, s.kind, list(s.paths)) for s in plan]
    rdd = spark.sparkContext.parallelize(rows, numSlices=max(1, len(rows)))
    shards = spark.createDataFrame(rdd, "number long, kind string, paths array<string>")
    return shards.mapInArrow(functools.partial(_read_batches, options), _sample_struct())


def _read_batches(options: Dict[str, Any], batches: Iterable["pa.RecordBatch"]) -> Iterator["pa.RecordBatch"]:
    for batch in batches:
        for row in batch.to_pylist():
            shard = InputShard(int(row["number"]), row["kind"], tuple(row["paths"]))
            for table in layout.shard_tables(shard, **options):
                yield from table.to_batches()


def embed(
    df: "DataFrame",
    model: PathLike,
    *,
    image_column: Union[None, str, Sequence[str]] = None,
    key_column: Optional[str] = None,
    passthrough: Optional[Sequence[str]] = None,
    device: str = "cpu",
    precision: str = "f32",
    normalize: bool = True,
    threads: Optional[int] = None,
    **model_options: Any,
) -> "DataFrame":
    """Embeds a DataFrame's encoded images with ``mapInArrow``.

    The result has ``key`` (string), ``embedding`` (``array<float>``, null
    where the image failed), ``error`` (null where it worked), then
    ``passthrough`` (default: every other column but the images and the key).
    ``image_column``: a binary column, by default the first of ``jpg``,
    ``image`` (:func:`read_shards`), ``bytes``, ``content`` (Spark's
    ``binaryFile`` source); ``key_column``: by default ``__key__``, else
    ``path``, else the row's position in its batch.

    ``model``, ``device``, ``precision`` and the other keywords are what
    :class:`seer.Model` takes; each Python worker loads the model once, with
    ``threads`` seer threads (default: the task's CPUs, ``spark.task.cpus``).
    """
    from pyspark.sql import types as T

    key = _model_key(model, device, precision, model_options)
    names = df.columns
    images = layout.image_columns(names, image_column)
    for c in images:
        if not isinstance(df.schema[c].dataType, T.BinaryType):
            kind = df.schema[c].dataType.simpleString()
            raise TypeError(f"column '{c}' holds {kind}, not image file bytes")
    key_col = layout.key_column_of(names, key_column)
    skip = set(images) | {layout.READ_ERROR} | ({key_col} if key_col else set())
    out_names = {"key", "embedding", "error"}
    if passthrough is None:
        keep = [c for c in names if c not in skip and c not in out_names]
    else:
        keep = [c for c in passthrough if c not in out_names]
        missing = [c for c in keep if c not in names]
        if missing:
            raise ValueError(
                f"passthrough: no column {', '.join(map(repr, missing))} "
                f"(the DataFrame has: {', '.join(names)})"
            )
        keep += [c for c in layout.BOOKKEEPING if c in names and c not in keep and c not in out_names]
    schema = T.StructType(
        [
            T.StructField("key", T.StringType(), True),
            T.StructField("embedding", T.ArrayType(T.FloatType(), True), True),
            T.StructField("error", T.StringType(), True),
        ]
        + [df.schema[c] for c in keep]
    )
    fn = functools.partial(
        _embed_batches,
        key,
        threads,
        dict(image_column=images, key_column=key_col, passthrough=keep, normalize=normalize),
        [f.name for f in schema.fields],
    )
    return df.mapInArrow(fn, schema)


def _embed_batches(
    key: Tuple,
    threads: Optional[int],
    options: Dict[str, Any],
    columns: List[str],
    batches: Iterable["pa.RecordBatch"],
) -> Iterator["pa.RecordBatch"]:
    import pyarrow as pa

    model = _worker_model(key, threads)
    listed = pa.list_(pa.field("element", pa.float32()))
    for batch in batches:
        for start in range(0, batch.num_rows, ROWS_PER_CALL):
            table = layout.embed_table(model, batch.slice(start, ROWS_PER_CALL), **options)
            embedding = table.column("embedding").combine_chunks().cast(listed)
            table = table.set_column(table.column_names.index("embedding"), "embedding", embedding)
            yield from table.select(columns).to_batches()


def write_clip_retrieval(df: "DataFrame", out_dir: PathLike, dtype: str = "float32") -> List[Dict[str, Any]]:
    """Writes an embedded DataFrame (:func:`read_shards` then :func:`embed`) into
    the clip-retrieval layout, as ``seer embed --shards`` does, and returns one
    summary per output shard written (``number``, ``rows``, ``errors``, ``dim``).

    Each task writes the output shards of its partition, each file to a
    temporary name then renamed, the metadata last: a shard is finished exactly
    when its three files exist (without rows: its errors file and
    ``errors/empty_N``), a failed task that Spark retries rewrites its
    shard whole, and a re-run (by either tool) skips finished shards. Each
    input shard's rows must be in one partition, as :func:`read_shards` makes
    them (do not repartition in between). Input shards without samples give no
    rows: :func:`embed_shards` writes them.
    """
    out = os.fspath(out_dir)
    missing = [c for c in ("key", "embedding", "error", SHARD, INDEX, COUNT) if c not in df.columns]
    if missing:
        raise ValueError(
            f"write_clip_retrieval: the DataFrame has no column {', '.join(missing)} "
            f"(it has: {', '.join(df.columns)}); it needs seer.spark.read_shards' rows after seer.spark.embed"
        )
    fn = functools.partial(_write_partition, out, dtype)
    rows = df.mapInArrow(fn, "number long, rows long, errors long, dim long").collect()
    return [r.asDict() for r in sorted(rows, key=lambda r: r["number"])]


def _write_partition(out: str, dtype: str, batches: Iterable["pa.RecordBatch"]) -> Iterator["pa.RecordBatch"]:
    import pyarrow as pa
    import pyarrow.compute as pc

    buffers: Dict[int, layout.ShardBuffer] = {}
    for batch in batches:
        if batch.num_rows == 0:
            continue
        table = pa.Table.from_batches([batch])
        dim = _dim(table.column("embedding"))
        numbers = table.column(SHARD)
        for number in pc.unique(numbers).to_pylist():
            buffer = buffers.setdefault(number, layout.ShardBuffer(number))
            buffer.add(table.filter(pc.equal(numbers, pa.scalar(number, numbers.type))))
            if buffer.whole:
                written = buffers.pop(number).write(out, dtype, dim)
                yield pa.RecordBatch.from_pylist(
                    [{"number": number, "rows": written["rows"], "errors": written["errors"], "dim": dim}],
                    schema=pa.schema([(n, pa.int64()) for n in ("number", "rows", "errors", "dim")]),
                )
    if buffers:
        parts = ", ".join(
            f"{b.number} ({len(b.seen)} of {b.count if b.count is not None else 'unknown'} rows)"
            for b in buffers.values()
        )
        raise RuntimeError(
            f"{out}: this partition holds only part of output shards {parts}: each input "
            "shard's rows must stay in one partition (as seer.spark.read_shards makes them; "
            "do not repartition before write_clip_retrieval)"
        )


def _dim(column: Any) -> Optional[int]:
    import pyarrow as pa

    for chunk in column.chunks:
        if pa.types.is_fixed_size_list(chunk.type):
            return chunk.type.list_size
        for cell in chunk:
            value = cell.as_py()
            if value is not None:
                return len(value)
    return None


def embed_shards(
    spark: "SparkSession",
    source: Union[PathLike, Sequence[PathLike]],
    out_dir: PathLike,
    model: PathLike,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    precision: str = "f32",
    image_column: Optional[str] = None,
    key_column: Optional[str] = None,
    files_per_shard: int = 10_000,
    threads: Optional[int] = None,
    **model_options: Any,
) -> List[Dict[str, Any]]:
    """``seer embed --shards SOURCE --out OUT_DIR`` on Spark: one task per
    unfinished input shard reads, embeds and writes it. Returns the command
    line's ``--json`` lines as dicts, skipped shards first (``shard``,
    ``number``, ``status``, ``rows``, ``errors``). When every shard is finished
    the model is never loaded. Finished shards are skipped as
    :func:`seer.ray.embed_shards` skips them: only when written from the input
    now at their position; a changed input list raises
    :class:`seer.layout.InputsChangedError` before anything is written."""
    out = os.fspath(out_dir)
    plan, todo, reports = layout.plan_unfinished(source, out, files_per_shard=files_per_shard)
    if not todo:
        return reports
    df = _read_plan(spark, todo, dict(image_column=image_column, key_column=key_column))
    df = embed(df, model, device=device, precision=precision, threads=threads, **model_options)
    written = {w["number"]: w for w in write_clip_retrieval(df, out, dtype)}
    # Input shards without samples gave no rows: written empty here (an errors
    # file and the empty marker, no embeddings), as the command line does.
    for n in sorted(s.number for s in todo):
        if n not in written and not layout.shard_complete(out, n):
            written[n] = {"number": n, **layout.write_embedded_shard(out, n, None, dtype=dtype)}
    names = {s.number: s.name for s in plan}
    for n in sorted(written):
        w = written[n]
        reports.append(layout.shard_report(names[n], n, "written", w["rows"], w["errors"]))
    return reports
