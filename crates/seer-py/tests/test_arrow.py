"""Model.embed_arrow: webdataset-style tables of encoded images in, a table of
keys, embeddings and errors out; a bad row never stops the batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import CLIP_OPENCLIP, RGB_FILES, load, same_bits

import seer


def shard(images: list, keys: list, image_type: pa.DataType = pa.binary()) -> pa.Table:
    return pa.table(
        {
            "__key__": pa.array(keys, type=pa.string()),
            "jpg": pa.array(images, type=image_type),
            "txt": pa.array([f"caption {k}" for k in keys], type=pa.string()),
        }
    )


def embeddings(result: pa.Table) -> np.ndarray:
    """The embedding column as an (N, dim) array, NaN where null."""
    column = result.column("embedding").combine_chunks()
    dim = column.type.list_size
    out = column.values.to_numpy().reshape(len(column), dim).copy()
    out[~column.is_valid().to_numpy(zero_copy_only=False)] = np.nan
    return out


def test_a_broken_row_gets_an_error_and_the_others_their_embeddings(clip: seer.Model) -> None:
    good = [p.read_bytes() for p in RGB_FILES[:3]]
    truncated = good[1][: len(good[1]) // 3]
    images = [good[0], truncated, good[1], None, good[2], b""]
    keys = ["a", "b", "c", "d", "e", "f"]
    result = clip.embed_arrow(shard(images, keys))

    assert result.schema == pa.schema(
        [
            ("key", pa.string()),
            ("embedding", pa.list_(pa.float32(), clip.dim)),
            ("error", pa.string()),
        ]
    )
    assert result.column("key").to_pylist() == keys
    errors = result.column("error").to_pylist()
    assert [e is None for e in errors] == [True, False, True, False, True, False]
    assert "cannot decode JPEG data" in errors[1]
    assert "null" in errors[3]
    assert "empty" in errors[5]
    column = result.column("embedding")
    assert column.null_count == 3
    assert [v is None for v in column.to_pylist()] == [e is not None for e in errors]
    got = embeddings(result)
    assert same_bits(got[[0, 2, 4]], clip.embed_images(good))


def test_record_batches_large_binary_and_no_key_column(clip: seer.Model) -> None:
    good = [p.read_bytes() for p in RGB_FILES]
    table = shard(good, [f"k{i}" for i in range(len(good))], pa.large_binary())
    expected = clip.embed_images(good)
    for given in (table, table.to_batches()[0]):
        assert same_bits(embeddings(clip.embed_arrow(given)), expected)
    unkeyed = clip.embed_arrow(table, key_column=None)
    assert unkeyed.column("key").to_pylist() == [str(i) for i in range(len(good))]
    renamed = table.rename_columns(["id", "image", "txt"])
    result = clip.embed_arrow(renamed, image_column="image", key_column="id")
    assert result.column("key").to_pylist() == table.column("__key__").to_pylist()


def test_integer_keys_become_strings(clip: seer.Model) -> None:
    table = pa.table({"__key__": [7, 8], "jpg": [p.read_bytes() for p in RGB_FILES[:2]]})
    assert clip.embed_arrow(table).column("key").to_pylist() == ["7", "8"]


def test_chunked_tables_and_more_rows_than_one_slice() -> None:
    """Several slices of whole batches give the rows of one call on the list."""
    model = load(CLIP_OPENCLIP, batch_size=2)
    good = [p.read_bytes() for p in RGB_FILES]
    images = (good * 8)[:37] + [b"broken"]
    keys = [str(i) for i in range(len(images))]
    table = pa.concat_tables([shard(images[:20], keys[:20]), shard(images[20:], keys[20:])])
    assert table.column("jpg").num_chunks == 2
    result = model.embed_arrow(table)
    expected, errors = model.embed_images(images, errors="return")
    got = embeddings(result)
    assert same_bits(got[:-1], expected[:-1])
    assert result.column("error").to_pylist()[:-1] == [None] * 37
    assert "unrecognised image format" in result.column("error").to_pylist()[-1]
    assert errors[-1] is not None


def test_wrong_tables_are_refused(clip: seer.Model) -> None:
    table = shard([RGB_FILES[0].read_bytes()], ["a"])
    with pytest.raises(seer.SeerError, match="no column 'png'.*__key__, jpg, txt"):
        clip.embed_arrow(table, image_column="png")
    with pytest.raises(seer.SeerError, match="no column 'id'"):
        clip.embed_arrow(table, key_column="id")
    with pytest.raises(seer.SeerError, match="column 'txt' holds string"):
        clip.embed_arrow(table, image_column="txt")
    with pytest.raises(TypeError, match="Table or RecordBatch"):
        clip.embed_arrow({"jpg": [b""]})  # type: ignore[arg-type]


def test_an_empty_table_gives_an_empty_table(clip: seer.Model) -> None:
    result = clip.embed_arrow(shard([], []))
    assert result.num_rows == 0
    assert result.schema.field("embedding").type == pa.list_(pa.float32(), clip.dim)


def test_an_uncastable_key_column_and_duplicate_columns_raise_seer_error(
    clip: seer.Model,
) -> None:
    image = RGB_FILES[0].read_bytes()
    nested = pa.table(
        {"jpg": pa.array([image], pa.binary()), "__key__": pa.array([[1, 2]], pa.list_(pa.int64()))}
    )
    with pytest.raises(seer.SeerError, match=r"key column '__key__' holds list<item: int64>"):
        clip.embed_arrow(nested)
    assert clip.embed_arrow(nested, key_column=None).column("key").to_pylist() == ["0"]
    binary, key = pa.array([image], pa.binary()), pa.array(["k"])
    twice = [
        (pa.Table.from_arrays([binary, binary, key], names=["jpg", "jpg", "__key__"]), "jpg"),
        (pa.Table.from_arrays([binary, key, key], names=["jpg", "__key__", "__key__"]), "__key__"),
    ]
    for table, name in twice:
        with pytest.raises(seer.SeerError, match=f"the table has 2 columns named '{name}'"):
            clip.embed_arrow(table)


def test_the_scale_out_layer_names_an_uncastable_key_column_and_duplicate_columns(
    clip: seer.Model,
) -> None:
    from seer import layout

    image = RGB_FILES[0].read_bytes()
    nested = pa.table(
        {"jpg": pa.array([image], pa.binary()), "__key__": pa.array([[1, 2]], pa.list_(pa.int64()))}
    )
    with pytest.raises(ValueError, match=r"key column '__key__' holds list<item: int64>"):
        layout.embed_table(clip, nested)
    binary, key = pa.array([image], pa.binary()), pa.array(["k"])
    for table, name in [
        (pa.Table.from_arrays([binary, binary, key], names=["jpg", "jpg", "__key__"]), "jpg"),
        (pa.Table.from_arrays([binary, key, key], names=["jpg", "__key__", "__key__"]), "__key__"),
    ]:
        with pytest.raises(ValueError, match=f"the table has 2 columns named '{name}'"):
            layout.embed_table(clip, table)
    # A column passed through is read too; one left out may be named twice.
    extra = pa.Table.from_arrays([binary, key, key, key], names=["jpg", "__key__", "x", "x"])
    with pytest.raises(ValueError, match="the table has 2 columns named 'x'"):
        layout.embed_table(clip, extra)
    out = layout.embed_table(clip, extra, passthrough=[])
    assert out.column("key").to_pylist() == ["k"]
    assert out.column("error").to_pylist() == [None]
