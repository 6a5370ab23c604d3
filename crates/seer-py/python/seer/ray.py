"""seer on Ray Data: embed a collection on a cluster, into the same
clip-retrieval layout as ``seer embed --shards``.

>>> import ray, seer.ray
>>> seer.ray.embed_shards("data/{00000..00999}.tar", "emb/", model="ViT-B-32", concurrency=8)

or, step by step:

>>> ds = seer.ray.read("data/{00000..00999}.tar", out_dir="emb/")  # unfinished shards only
>>> ds = ds.map_batches(seer.ray.Embedder, fn_constructor_kwargs={"model": "ViT-B-32"},
...                     concurrency=8, batch_size=256, batch_format="pyarrow")
>>> seer.ray.write_clip_retrieval(ds, "emb/")  # each shard as soon as it is whole

(``embed_shards`` also writes the empty output of an input shard without
samples, as the command line does; ``write_clip_retrieval`` sees no rows for
it and does so only when given ``shards=``.)

* :class:`Embedder` is a callable class for ``Dataset.map_batches``: one model
  per actor, built in ``__init__``; each batch of encoded images becomes
  ``key``, ``embedding`` (``fixed_size_list<float32>[dim]``) and ``error``
  columns. A corrupt or truncated image is a row with ``error`` set, never an
  exception or a lost batch.
* :func:`read` reads webdataset shards (exactly as the command line does),
  parquet files with an image column, or an image folder, as undecoded bytes:
  seer decodes them, so rows equal ``seer embed``'s bit for bit.
* :func:`write_clip_retrieval` writes one output shard per input shard, each
  file to a temporary name then renamed, the metadata last, as the command line
  does: a re-run (by either tool) skips finished shards (those written from
  the input now at their position; a changed input list is refused), and a
  row delivered twice by a retried task is written once.
* :func:`write_lance` writes a Lance dataset (``pylance``).

Ray is imported when these are used, not when ``seer.ray`` is imported.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from . import layout
from .layout import COUNT, INDEX, SHARD, InputShard

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

__all__ = ["Embedder", "embed_shards", "read", "write_clip_retrieval", "write_lance"]

PathLike = Union[str, "os.PathLike[str]"]


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "seer.ray needs Ray Data: pip install 'ray[data]'"
        ) from e
    return ray


class Embedder:
    """Embeds batches of encoded images; for ``Dataset.map_batches``.

    >>> ds.map_batches(seer.ray.Embedder, fn_constructor_kwargs={"model": "ViT-B-32"},
    ...                concurrency=4, num_cpus=8, batch_format="pyarrow")

    ``model`` is what :class:`seer.Model` takes (a name, hub id or local
    folder), loaded once per actor; ``device``, ``precision`` and any other
    keyword (``batch_size``, ``tokenizer``, ``offline``, ``max_pixels``) go to
    :class:`seer.Model`. A :class:`seer.Model` itself is refused: each actor
    loads its own.

    Each batch (a pyarrow Table, a pandas DataFrame or a dict of numpy arrays)
    needs an image column: ``image_column``, by default the first of ``jpg``
    (``ray.data.read_webdataset(..., decoder=None)``; a webdataset's ``png``,
    ``jpeg`` and ``webp`` columns too, first non-null per row), ``image``
    (:func:`read`), ``bytes`` (``read_binary_files``). Encoded files give the
    command line's numbers bit for bit; decoded HxWx3 uint8 arrays are accepted
    too. The key column is ``key_column``, by default ``__key__`` or else
    ``path``. The result has ``key``, ``embedding``, ``error``, then
    ``passthrough`` (default: every other column but the images) and the
    columns :func:`write_clip_retrieval` needs.

    ``threads``: seer's worker threads in this actor; by default the CPUs Ray
    assigned it (``num_cpus`` of ``map_batches``).
    """

    def __init__(
        self,
        model: PathLike,
        device: str = "cpu",
        precision: str = "f32",
        *,
        image_column: Union[None, str, Sequence[str]] = None,
        key_column: Optional[str] = None,
        passthrough: Optional[Sequence[str]] = None,
        normalize: bool = True,
        threads: Optional[int] = None,
        **model_options: Any,
    ) -> None:
        from . import Model

        if isinstance(model, Model):
            raise TypeError(
                "Embedder: pass the model's name or path, not a seer.Model (each actor loads its own)"
            )
        if threads is None:
            threads = _assigned_cpus()
        if threads is not None:
            # Read when seer's worker threads start (the first embedding call of
            # this process), which has not happened yet in a fresh actor.
            os.environ["RAYON_NUM_THREADS"] = str(max(1, int(threads)))
        self.model = Model(model, device, precision, **model_options)
        self.image_column = image_column
        self.key_column = key_column
        self.passthrough = passthrough
        self.normalize = normalize

    def __call__(self, batch: Any) -> "pa.Table":
        return layout.embed_table(
            self.model,
            batch,
            image_column=self.image_column,
            key_column=self.key_column,
            passthrough=self.passthrough,
            normalize=self.normalize,
        )


def _assigned_cpus() -> Optional[int]:
    """The whole CPUs Ray assigned to this worker, or None outside Ray."""
    try:
        import ray
    except ImportError:
        return None
    try:
        if not ray.is_initialized():
            return None
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001 - not in a worker, or an older Ray
        return None
    if not cpus:
        return None
    return max(1, int(round(cpus)))


def read(
    source: Union[PathLike, Sequence[PathLike]],
    *,
    out_dir: Optional[PathLike] = None,
    image_column: Optional[str] = None,
    key_column: Optional[str] = None,
    caption_column: Optional[str] = None,
    files_per_shard: int = 10_000,
    rows_per_block: int = 256,
    num_cpus: float = 0,
    concurrency: Optional[int] = None,
) -> "ray.data.Dataset":
    """The samples of ``source`` as a Ray Dataset of undecoded images.

    ``source`` is a webdataset shard specification as ``seer embed --shards``
    takes it (``data/{00000..00999}.tar``, a folder of shards, one shard), a
    parquet file or folder of parquet files (an image bytes column:
    ``image_column``, by default ``jpg``, ``image``, ...; keys from
    ``key_column``, by default ``__key__``, ``key``, ``url`` or the row
    number), or a folder of images (runs of ``files_per_shard`` files, sorted,
    per input shard). Every input shard is read by one task.

    Webdataset shards are read as the command line reads them, not with
    ``ray.data.read_webdataset``, which decodes with PIL by default, fails the
    whole dataset on one truncated tar, and keeps no shard identity: here a
    shard that breaks part way (corrupt, cut short, even between two members,
    or without its gzip trailer) gives what it holds plus a row with an error,
    and each row carries its output shard and position, so that
    :func:`write_clip_retrieval` can write one output shard per input shard.

    Columns: ``__key__``, ``image`` (bytes), ``txt`` (caption), ``image_path``
    (``SHARD/MEMBER``), ``origin`` (``SHARD:KEY``), ``__error__`` (why the row
    cannot be embedded, else null) and the bookkeeping ``__shard__``,
    ``__index__``, ``__count__``. With ``out_dir``, input shards whose output
    there is complete are left out (a resumed run reads only what is left),
    each other one gets its input record there (``inputs/input_N.json``, as
    the command line writes it), and a folder whose finished shards came from
    other inputs than those now at their positions (the input list changed
    since) is refused with :class:`seer.layout.InputsChangedError` (a
    ``ValueError``). Without ``out_dir`` no records are written, and a later
    run cannot tell whether the shards :func:`write_clip_retrieval` writes
    came from the same inputs.

    Read tasks take ``num_cpus`` each, by default none: reading is file I/O
    and tar parsing, and the embedding actors may hold every CPU (one actor
    per node with all its CPUs), which would leave read tasks that need a
    CPU waiting forever. ``concurrency`` caps the read tasks running at once
    (default: the cluster's CPUs).
    """
    if out_dir is not None:
        # Finished shards are left out (and a changed input list refused);
        # the others get their input records before any of their files.
        _, plan, _ = layout.plan_unfinished(source, out_dir, files_per_shard=files_per_shard)
    else:
        plan = layout.plan_shards(source, files_per_shard=files_per_shard)
    return read_plan(
        plan,
        image_column=image_column,
        key_column=key_column,
        caption_column=caption_column,
        rows_per_block=rows_per_block,
        num_cpus=num_cpus,
        concurrency=concurrency,
    )


def read_plan(
    plan: Sequence[InputShard],
    *,
    image_column: Optional[str] = None,
    key_column: Optional[str] = None,
    caption_column: Optional[str] = None,
    rows_per_block: int = 256,
    num_cpus: float = 0,
    concurrency: Optional[int] = None,
) -> "ray.data.Dataset":
    """:func:`read` for input shards already planned (:func:`seer.layout.plan_shards`)."""
    ray = _ray()
    if not plan:
        return ray.data.from_arrow(layout.sample_schema().empty_table())
    items = [{"number": s.number, "kind": s.kind, "paths": list(s.paths)} for s in plan]
    shards = ray.data.from_items(items, override_num_blocks=len(items))
    options = dict(
        image_column=image_column,
        key_column=key_column,
        caption_column=caption_column,
        rows_per_block=rows_per_block,
    )
    if concurrency is None and ray.is_initialized():
        # Read tasks take no CPU slot: bound them by the cluster's CPUs.
        concurrency = int(ray.cluster_resources().get("CPU", 1))
    compute = None
    if concurrency is not None:
        compute = ray.data.TaskPoolStrategy(size=max(1, min(len(items), int(concurrency))))
    return shards.map_batches(
        _ReadShards(options),
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=num_cpus,
        compute=compute,
    )


class _ReadShards:
    """The read step: one row naming an input shard in, its sample tables out."""

    def __init__(self, options: Dict[str, Any]) -> None:
        self.options = options

    def __call__(self, batch: "pa.Table") -> Iterable["pa.Table"]:
        for row in batch.to_pylist():
            shard = InputShard(int(row["number"]), row["kind"], tuple(row["paths"]))
            yield from layout.shard_tables(shard, **self.options)


def write_clip_retrieval(
    ds: "ray.data.Dataset",
    out_dir: PathLike,
    dtype: str = "float32",
    *,
    shards: Optional[Iterable[int]] = None,
    dim: Optional[int] = None,
    on_shard: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> List[Dict[str, Any]]:
    """Writes an embedded dataset into the clip-retrieval layout of ``seer embed --shards``.

    ``ds`` is :func:`read`'s dataset after :class:`Embedder` (its rows carry
    their output shard, position and the shard's row count). For each output
    shard ``N``: ``img_emb/img_emb_N.npy`` (``[rows, dim]``, ``dtype`` float32
    or float16), ``metadata/metadata_N.parquet`` (``image_path``, ``key``,
    ``caption``, row for row with the embeddings) and ``errors/errors_N.parquet``
    (``key``, ``origin``, ``error`` of each sample that failed). A shard is
    written as soon as all its rows have arrived, each file atomically and the
    metadata last: a shard is finished exactly when its three files exist (a
    shard without rows: its errors file and ``errors/empty_N``), as for the
    command line, and a killed run resumed by either tool redoes only
    unfinished shards. Which input each shard came from is recorded by
    :func:`read` given ``out_dir`` (``inputs/input_N.json``, before any file
    of the shard), so that a rerun with a changed input list is refused
    rather than skipping the wrong shards; pass it the same folder.

    The rows are collected on the calling process (the driver), which must see
    ``out_dir``; they arrive in any order and are written in shard order. A
    row that arrives twice is written once. ``shards``: the output shards
    expected; those that received no rows (input shards without samples) are
    written empty, as the command line does (an errors file and the empty
    marker: no embeddings, so no embedding size is needed). ``dim``: the
    embedding size, when the batches' columns do not give it.

    Returns one summary per shard written (``number``, ``rows``, ``errors``,
    ``duplicates``), each also given to ``on_shard`` when written. Raises if a
    shard's rows are missing at the end (nothing is written for it).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    out = os.fspath(out_dir)
    buffers: Dict[int, layout.ShardBuffer] = {}
    done: List[Dict[str, Any]] = []
    seen_numbers = set()
    written = set()
    width: Optional[int] = dim

    def finish(buffer: layout.ShardBuffer) -> None:
        summary = {"number": buffer.number, "status": "written", **buffer.write(out, dtype, width)}
        summary["duplicates"] = buffer.duplicates
        done.append(summary)
        written.add(buffer.number)
        if on_shard is not None:
            on_shard(summary)

    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        if batch.num_rows == 0:
            continue
        _check_columns(batch)
        if width is None:
            width = _dim_of(batch.column("embedding"))
        numbers = batch.column(SHARD)
        for number in pc.unique(numbers).to_pylist():
            part = batch.filter(pc.equal(numbers, pa.scalar(number, numbers.type)))
            seen_numbers.add(number)
            buffer = buffers.get(number)
            if buffer is None:
                if number in written:
                    # Rows of a shard already written, delivered again.
                    continue
                buffer = buffers[number] = layout.ShardBuffer(number)
            buffer.add(part)
            if buffer.whole:
                finish(buffers.pop(number))
    if buffers:
        missing = ", ".join(
            f"{b.number} ({len(b.seen)} of {b.count if b.count is not None else 'unknown'} rows)"
            for b in buffers.values()
        )
        raise RuntimeError(
            f"{out}: rows are missing for output shards {missing}; nothing was written for them"
        )
    for number in shards or ():
        if number not in seen_numbers and not layout.shard_complete(out, number):
            finish(layout.ShardBuffer(number, count=0))
    return done


_NEEDED = ("key", "embedding", "error", SHARD, INDEX, COUNT)


def _check_columns(batch: "pa.Table") -> None:
    missing = [c for c in _NEEDED if c not in batch.column_names]
    if missing:
        raise ValueError(
            f"write_clip_retrieval: the dataset has no column {', '.join(missing)} "
            f"(it has: {', '.join(batch.column_names)}); it needs seer.ray.read's rows after "
            "seer.ray.Embedder. For other datasets use ds.write_parquet or seer.ray.write_lance."
        )


def _dim_of(column: Any) -> Optional[int]:
    import pyarrow as pa

    kind = column.type
    if pa.types.is_fixed_size_list(kind):
        return kind.list_size
    shape = getattr(kind, "shape", None)
    if shape:
        return int(shape[-1])
    return None


def write_lance(
    ds: "ray.data.Dataset",
    uri: str,
    *,
    mode: str = "create",
    keep_bookkeeping: bool = False,
    **options: Any,
) -> None:
    """Writes an embedded dataset to a Lance dataset at ``uri`` (needs ``pylance``).

    Columns: ``key``, ``embedding`` (a fixed-size float32 vector, ready for a
    Lance vector index), ``error`` and the passed-through ones; the bookkeeping
    columns (``__shard__``, ``__index__``, ``__count__``) are dropped unless
    ``keep_bookkeeping``. ``mode``: ``create``, ``append`` or ``overwrite``.

    The rows stream through the calling process into one Lance write, which
    commits at the end: a failed run leaves no new version (and is redone
    whole, unlike :func:`write_clip_retrieval`). ``options`` go to
    ``lance.write_dataset``. (Ray's own ``Dataset.write_lance`` writes from the
    workers, but breaks whenever its ``pylance`` is not the version it expects.)
    """
    _ray()
    try:
        import lance
    except ImportError as e:
        raise ImportError("write_lance needs Lance: pip install pylance") from e
    import pyarrow as pa

    if mode not in ("create", "append", "overwrite"):
        raise ValueError(f"mode must be create, append or overwrite, got {mode!r}")
    drop = () if keep_bookkeeping else (SHARD, INDEX, COUNT)
    batches = (
        b.drop_columns([c for c in drop if c in b.column_names])
        for b in ds.iter_batches(batch_format="pyarrow", batch_size=None)
        if b.num_rows
    )
    first = next(batches, None)
    if first is None:
        raise ValueError(f"{uri}: the dataset has no rows to write")
    schema = first.schema

    def tables() -> Iterable["pa.RecordBatch"]:
        for table in itertools.chain([first], batches):
            if table.schema != schema:
                try:
                    table = table.select(schema.names).cast(schema)
                except (KeyError, ValueError, pa.ArrowInvalid) as e:
                    raise ValueError(
                        f"{uri}: batches with different columns ({schema.names} and "
                        f"{table.column_names}); one Lance table needs one schema"
                    ) from e
            yield from table.to_batches()

    reader = pa.RecordBatchReader.from_batches(schema, tables())
    lance.write_dataset(reader, uri, mode=mode, **options)


def embed_shards(
    source: Union[PathLike, Sequence[PathLike]],
    out_dir: PathLike,
    model: PathLike,
    *,
    concurrency: int = 1,
    num_cpus: float = 1,
    batch_size: int = 256,
    dtype: str = "float32",
    device: str = "cpu",
    precision: str = "f32",
    image_column: Optional[str] = None,
    key_column: Optional[str] = None,
    files_per_shard: int = 10_000,
    read_concurrency: Optional[int] = None,
    embedder: type = Embedder,
    on_shard: Optional[Callable[[Dict[str, Any]], None]] = None,
    ray_remote_args: Optional[Dict[str, Any]] = None,
    **model_options: Any,
) -> List[Dict[str, Any]]:
    """``seer embed --shards SOURCE --out OUT_DIR`` on Ray: every unfinished input
    shard of ``source`` into the clip-retrieval layout in ``out_dir``.

    ``concurrency`` actors each load ``model`` once and use ``num_cpus`` CPUs
    (seer's threads); ``batch_size`` rows go to an actor at a time. Input
    shards are read by tasks that take no CPU slot, at most
    ``read_concurrency`` at once (default: two per actor). Finished
    output shards are skipped without reading them; when nothing is left the
    model is never loaded. A finished shard is skipped only when it was
    written from the input now at its position (``inputs/input_N.json``,
    the command line's record, written for each shard before its files):
    when the input list changed since, :class:`seer.layout.InputsChangedError`
    (a ``ValueError``) is raised before anything is written. Returns the command line's ``--json`` lines as dicts,
    skipped shards first: ``shard``, ``number``, ``status`` (``skipped`` or
    ``written``), ``rows``, ``errors``.

    Needs ``ray.init()`` first (or starts a local Ray). Keyword options left
    over (``tokenizer``, ``offline``, ``max_pixels``, a model ``batch_size`` as
    ``model_batch_size``) go to :class:`seer.Model`; ``ray_remote_args`` to
    ``map_batches`` (``memory``, ``resources``...). An actor that dies is
    restarted and its batch retried: Ray Data's actor pools default to
    ``max_restarts=-1`` and ``max_task_retries=-1``. ``embedder``: a subclass
    of :class:`Embedder` to use instead. ``on_shard`` is called with each
    written shard's summary as it is written.
    """
    out = os.fspath(out_dir)
    plan, todo, reports = layout.plan_unfinished(source, out, files_per_shard=files_per_shard)
    if not todo:
        return reports
    if "model_batch_size" in model_options:
        model_options["batch_size"] = model_options.pop("model_batch_size")
    ray = _ray()
    ds = read_plan(
        todo,
        image_column=image_column,
        key_column=key_column,
        concurrency=read_concurrency or 2 * concurrency,
    )
    ds = ds.map_batches(
        embedder,
        fn_constructor_kwargs=dict(
            model=os.fspath(model), device=device, precision=precision, **model_options
        ),
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=num_cpus,
        batch_size=batch_size,
        batch_format="pyarrow",
        **(ray_remote_args or {}),
    )

    names = {s.number: s.name for s in plan}
    written = write_clip_retrieval(ds, out, dtype, shards=sorted(s.number for s in todo), on_shard=on_shard)
    for w in sorted(written, key=lambda w: w["number"]):
        reports.append(layout.shard_report(names[w["number"]], w["number"], "written", w["rows"], w["errors"]))
    return reports
