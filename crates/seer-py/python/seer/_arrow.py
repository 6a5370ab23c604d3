"""``Model.embed_arrow``: a column of encoded images in, a table of embeddings out.

The images are embedded in slices of whole model batches, so memory stays
bounded on large tables and the batches are those of one call on the whole
column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Union

import numpy as np

from ._seer import SeerError

if TYPE_CHECKING:
    import pyarrow as pa

    from ._model import Model

# Model batches per slice of the column.
_BATCHES_PER_SLICE = 16


def embed_arrow(
    model: "Model",
    table: Union["pa.Table", "pa.RecordBatch"],
    image_column: str,
    key_column: Optional[str],
) -> "pa.Table":
    import pyarrow as pa

    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        hint = ""
        if type(table).__name__ == "DataFrame":
            hint = " (for a pandas DataFrame: pyarrow.Table.from_pandas(df))"
        raise TypeError(
            f"expected a pyarrow Table or RecordBatch, got {type(table).__name__}{hint}"
        )
    if not isinstance(image_column, str):
        raise TypeError(f"image_column must be a str, got {type(image_column).__name__}")
    if key_column is not None and not isinstance(key_column, str):
        raise TypeError(f"key_column must be a str or None, got {type(key_column).__name__}")
    images = _column(table, image_column)
    if pa.types.is_dictionary(images.type) and _is_binary(images.type.value_type):
        # Dictionary-encoded binary (as some Parquet readers give it): the values.
        images = images.cast(images.type.value_type)
    if not _is_binary(images.type):
        raise SeerError(
            f"column '{image_column}' holds {images.type}, not encoded image files (binary)"
        )
    if key_column is None:
        keys = pa.array([str(i) for i in range(table.num_rows)], type=pa.string())
    else:
        column = _column(table, key_column)
        try:
            keys = column.cast(pa.string()).combine_chunks()
        except pa.ArrowException as e:
            raise SeerError(
                f"key column '{key_column}' holds {column.type}, which cannot be cast to "
                f"strings ({e}): pass key_column=None to number the rows instead"
            ) from None

    dim = model.dim
    rows = table.num_rows
    vectors = np.empty((rows, dim), dtype=np.float32)
    errors: List[Optional[str]] = []
    step = model.batch_size * _BATCHES_PER_SLICE
    for start in range(0, rows, step):
        cells = images.slice(start, step).to_pylist()
        native = [
            ("bytes", bytes(cell))
            if cell is not None
            else ("invalid", ("null", f"no image: the '{image_column}' value is null"))
            for cell in cells
        ]
        buffer, failures = model._native.embed_images(native, True, False)
        vectors[start : start + len(cells)] = np.frombuffer(buffer, dtype=np.float32).reshape(
            len(cells), dim
        )
        errors.extend(None if f is None else f[1] for f in failures)

    failed = pa.array([e is not None for e in errors], type=pa.bool_())
    embedding = pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1), type=pa.float32()), dim, mask=failed
    )
    return pa.table(
        {
            "key": keys,
            "embedding": embedding,
            "error": pa.array(errors, type=pa.string()),
        }
    )


def _column(table: "pa.Table", name: str) -> "pa.ChunkedArray":
    count = table.column_names.count(name)
    if count == 0:
        raise SeerError(f"no column '{name}' (the table has: {', '.join(table.column_names)})")
    if count > 1:
        raise SeerError(f"the table has {count} columns named '{name}': rename or drop all but one")
    return table.column(name)


def _is_binary(kind: "pa.DataType") -> bool:
    import pyarrow as pa

    checks = [pa.types.is_binary, pa.types.is_large_binary, pa.types.is_fixed_size_binary]
    binary_view = getattr(pa.types, "is_binary_view", None)
    if binary_view is not None:
        checks.append(binary_view)
    return any(check(kind) for check in checks)
