#!/usr/bin/env python3
"""Writes a small embedding export in clip-retrieval's layout, with the libraries
clip-retrieval itself uses (numpy, pyarrow), so seer's `import` is tested on real
pyarrow output:

    fixtures/exchange/img_emb/img_emb_{0,1}.npy      float16 [rows, 16]
    fixtures/exchange/metadata/metadata_{0,1}.parquet  image_path, caption (snappy)

With `--check DIR` it instead reads a seer export with numpy and pyarrow and
prints what it found (the other direction of the exchange).
"""
import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent


def write(out: Path):
    rng = np.random.default_rng(0)
    (out / "img_emb").mkdir(parents=True, exist_ok=True)
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    row = 0
    for shard, n in enumerate([3, 2]):
        emb = rng.normal(size=(n, 16)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        np.save(out / "img_emb" / f"img_emb_{shard}.npy", emb.astype(np.float16))
        paths = [f"/photos/import-test/img{row + i}.jpg" for i in range(n)]
        table = pa.table({"image_path": paths, "caption": [f"caption {row + i}" for i in range(n)]})
        pq.write_table(table, out / "metadata" / f"metadata_{shard}.parquet", compression="snappy")
        row += n
    print(f"wrote {out}")


def check(export: Path):
    emb = np.load(export / "img_emb" / "img_emb_0.npy")
    meta = pq.read_table(export / "metadata" / "metadata_0.parquet")
    assert emb.shape[0] == meta.num_rows, (emb.shape, meta.num_rows)
    print(f"numpy reads {emb.shape} {emb.dtype}; pyarrow reads {meta.num_rows} rows, columns {meta.column_names}")
    print("first path:", meta.column("image_path")[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", type=Path)
    args = ap.parse_args()
    if args.check:
        check(args.check)
    else:
        write(ROOT / "fixtures" / "exchange")


if __name__ == "__main__":
    main()
