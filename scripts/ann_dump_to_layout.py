#!/usr/bin/env python3
"""Turn an `ann_bench --dump` data set into the clip-retrieval layout, so that
`seer import` (and its graph build) can be timed on the same vectors the ANN
benchmark and `scripts/bench_ann_reference.py` use:

    cargo run --release -p seer-ann --example ann_bench -- \\
        --n 1000000 --dim 512 --queries 1000 --datasets clustered --dump /tmp/anndump --dump-only
    python3 scripts/ann_dump_to_layout.py /tmp/anndump/clustered /tmp/annlayout --shards 10
    time seer import /tmp/annlayout --model DIR_OF_A_512_D_MODEL --index /tmp/annindex --json

Writes `img_emb/img_emb_{i}.npy` (float16, as `seer embed --shards --dtype f16`
writes them) and `metadata/metadata_{i}.parquet` (`image_path` = `row/{id}`)
for `--shards` equal slices of the rows. Needs numpy and pyarrow.
"""
import argparse
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dump", help="DIR/<dataset> written by ann_bench --dump")
    p.add_argument("out", help="output folder (clip-retrieval layout)")
    p.add_argument("--shards", type=int, default=10)
    a = p.parse_args()
    base = np.load(os.path.join(a.dump, "base.npy"), mmap_mode="r")
    n = base.shape[0]
    os.makedirs(os.path.join(a.out, "img_emb"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "metadata"), exist_ok=True)
    bounds = np.linspace(0, n, a.shards + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        np.save(os.path.join(a.out, "img_emb", f"img_emb_{i}.npy"), base[lo:hi].astype(np.float16))
        paths = pa.array([f"row/{r}" for r in range(lo, hi)], pa.string())
        pq.write_table(pa.table({"image_path": paths}), os.path.join(a.out, "metadata", f"metadata_{i}.parquet"))
        print(f"shard {i}: rows {lo}..{hi}", flush=True)


if __name__ == "__main__":
    main()
