#!/usr/bin/env python3
"""Reference HNSW libraries on the vectors seer-ann's benchmark generates.

seer-ann's `ann_bench` example writes its synthetic data set, queries and exact
top-k ground truth as .npy files:

    cargo run --release -p seer-ann --example ann_bench -- \\
        --n 200000 --dim 512 --queries 1000 --datasets clustered \\
        --dump /tmp/anndump --dump-only

This script loads `DIR/base.npy` (row i has id i), `queries.npy` and `gt_ids.npy`,
builds hnswlib (space 'ip') and usearch (metric 'ip') with the same M and
ef_construction as seer (`--m`, `--ef-construction`; usearch: connectivity=M,
expansion_add=ef_construction, layer 0 gets 2*M links in all three) on
`--threads` threads, then for every ef in `--ef-sweep` measures:

- recall@k against the exact f32 ground truth, computed as seer computes it:
  (sum over queries of |returned ids & true ids|) / (queries * k);
- single-threaded latency of one query per call (p50, p99, mean), the way seer's
  bench times `Hnsw::search`: includes the Python binding's per-call overhead;
- the mean per query of one single-threaded batch call over all queries
  (`batch_mean_ms`), which excludes most of that overhead.

One untimed pass over the queries runs before the sweep (as in seer's bench).
usearch can store f32 or f16 (`--usearch-dtypes f16,f32`); seer stores f16.
With f16 usearch also rounds the query to f16; seer keeps queries in f32.

Progress goes to stderr, one JSON object is the last line of stdout (and is
written to `--json-out` if given).

Setup: python3 -m venv /tmp/annenv && /tmp/annenv/bin/pip install numpy hnswlib usearch
"""
import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def recall_at_k(got, truth):
    """Same definition as seer's bench: hits / (queries * k), -1 padding ignored."""
    hits = 0
    total = 0
    for g, t in zip(got, truth):
        t = [x for x in t.tolist() if x >= 0]
        total += len(t)
        hits += len(set(t) & set(int(x) for x in g))
    return hits / max(total, 1)


def lost_queries(got, truth):
    """Queries whose own recall is below 0.5 (seer's bench reports the same)."""
    n = 0
    for g, t in zip(got, truth):
        t = set(int(x) for x in t if x >= 0)
        if len(t & set(int(x) for x in g)) < 0.5 * len(t):
            n += 1
    return n


def pct(sorted_ms, p):
    """Nearest-rank percentile, as seer's bench computes it."""
    if not sorted_ms:
        return 0.0
    i = int(round((len(sorted_ms) - 1) * p))
    return sorted_ms[i]


def sweep(name, search_one, search_batch, set_ef, queries, truth, efs, k, distances=None):
    """`search_one(q)` returns ids; `distances()`, if given, the running count of
    distance computations (usearch reports it; hnswlib's Python API does not)."""
    rows = []
    # Warm-up: one untimed pass at the first ef.
    set_ef(efs[0])
    for q in queries:
        search_one(q)
    for ef in efs:
        set_ef(ef)
        lat = []
        got = []
        d0 = distances() if distances else 0
        for q in queries:
            t0 = time.perf_counter_ns()
            ids = search_one(q)
            lat.append((time.perf_counter_ns() - t0) / 1e6)
            got.append(ids)
        dist = (distances() - d0) / len(queries) if distances else None
        t0 = time.perf_counter_ns()
        batch = search_batch(queries)
        batch_ms = (time.perf_counter_ns() - t0) / 1e6 / len(queries)
        r = recall_at_k(got, truth)
        rb = recall_at_k(batch, truth)
        mean = sum(lat) / len(lat)
        lat.sort()
        row = {
            "ef": ef,
            "recall": r,
            "recall_batch": rb,
            "p50_ms": pct(lat, 0.5),
            "p99_ms": pct(lat, 0.99),
            "mean_ms": mean,
            "batch_mean_ms": batch_ms,
            "distances": dist,
            "queries_below_half_recall": lost_queries(got, truth),
        }
        log(
            f"[{name}]   ef {ef:4d}  recall@{k} {r:.4f}  p50 {row['p50_ms']:.3f} ms  "
            f"p99 {row['p99_ms']:.3f} ms  mean {mean:.3f} ms  batch mean {batch_ms:.3f} ms  "
            + (f"distances/query {dist:.0f}  " if dist is not None else "")
            + f"queries with recall<0.5: {row['queries_below_half_recall']}"
        )
        rows.append(row)
    return rows


def proc_line(path, prefix):
    """The first line of `path` starting with `prefix`, or None (not Linux)."""
    try:
        with open(path) as f:
            return next((line for line in f if line.startswith(prefix)), None)
    except OSError:
        return None


def timed_build(name, n, build):
    """Runs `build()`, logs its rate and the RSS after it, returns its seconds."""
    t0 = time.perf_counter()
    build()
    took = time.perf_counter() - t0
    log(f"[{name}] build {took:.1f} s ({n / took:.0f} items/s), RSS {rss_mib():.0f} MiB")
    return took


def rss_mib():
    line = proc_line("/proc/self/status", "VmRSS:")
    return int(line.split()[1]) / 1024 if line else float("nan")


def bench_hnswlib(base, queries, truth, a, efs):
    import hnswlib

    n, dim = base.shape
    idx = hnswlib.Index(space="ip", dim=dim)
    cached = cache_path(a, "hnswlib", n, "bin")
    build = None
    if cached and os.path.exists(cached):
        idx.load_index(cached, max_elements=n)
        log(f"[hnswlib] loaded {cached} (build time not measured)")
    else:
        idx.init_index(max_elements=n, ef_construction=a.ef_construction, M=a.m, random_seed=a.seed)
        idx.set_num_threads(a.threads)
        log(f"[hnswlib] building {n} x {dim}, M={a.m}, ef_construction={a.ef_construction}, {a.threads} threads")
        ids = np.arange(n, dtype=np.int64)
        build = timed_build("hnswlib", n, lambda: idx.add_items(base, ids, num_threads=a.threads))
        if cached:
            idx.save_index(cached)
    idx.set_num_threads(1)

    def one(q):
        labels, _ = idx.knn_query(q, k=a.k, num_threads=1)
        return labels[0]

    def batch(qs):
        labels, _ = idx.knn_query(qs, k=a.k, num_threads=1)
        return labels

    rows = sweep("hnswlib", one, batch, idx.set_ef, queries, truth, efs, a.k)
    out = {
        "library": "hnswlib",
        "version": getattr(hnswlib, "__version__", None) or pkg_version("hnswlib"),
        "storage": "f32",
        "params": {"M": a.m, "ef_construction": a.ef_construction, "space": "ip"},
        "build_s": build,
        "build_items_per_s": n / build if build else None,
        "rss_after_build_mib": rss_mib(),
        "ef_sweep": rows,
    }
    del idx
    return out


def cache_path(a, name, n, ext):
    """Where `--cache-dir` keeps a built index (keyed by library, size and params)."""
    if not a.cache_dir:
        return None
    os.makedirs(a.cache_dir, exist_ok=True)
    return os.path.join(a.cache_dir, f"{name}-n{n}-m{a.m}-efc{a.ef_construction}.{ext}")


def bench_usearch(base, queries, truth, a, efs, dtype):
    from usearch.index import Index

    n, dim = base.shape
    idx = Index(
        ndim=dim,
        metric="ip",
        dtype=dtype,
        connectivity=a.m,
        expansion_add=a.ef_construction,
        expansion_search=efs[0],
    )
    name = f"usearch-{dtype}"
    cached = cache_path(a, name, n, "usearch")
    build = None
    if cached and os.path.exists(cached):
        idx.load(cached)
        idx.expansion_search = efs[0]
        log(f"[{name}] loaded {cached} (build time not measured)")
    else:
        log(
            f"[{name}] building {n} x {dim}, connectivity={a.m}, expansion_add={a.ef_construction}, "
            f"{a.threads} threads, hardware acceleration {idx.hardware_acceleration}"
        )
        keys = np.arange(n, dtype=np.uint64)
        build = timed_build(name, n, lambda: idx.add(keys, base, threads=a.threads))
        if cached:
            idx.save(cached)

    counted = [0]

    def one(q):
        m = idx.search(q, a.k, threads=1)
        counted[0] += m.computed_distances
        return m.keys

    def batch(qs):
        return idx.search(qs, a.k, threads=1).keys

    def set_ef(ef):
        idx.expansion_search = ef

    rows = sweep(name, one, batch, set_ef, queries, truth, efs, a.k, distances=lambda: counted[0])
    out = {
        "library": "usearch",
        "version": pkg_version("usearch"),
        "storage": dtype,
        "hardware_acceleration": str(idx.hardware_acceleration),
        "params": {
            "connectivity": a.m,
            "expansion_add": a.ef_construction,
            "metric": "ip",
            "dtype": dtype,
        },
        "build_s": build,
        "build_items_per_s": n / build if build else None,
        "memory_usage_mib": idx.memory_usage / 2**20,
        "rss_after_build_mib": rss_mib(),
        "ef_sweep": rows,
    }
    del idx
    return out


def pkg_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - best effort, only for the report
        return None


def cpu_model():
    line = proc_line("/proc/cpuinfo", "model name")
    return line.split(":", 1)[1].strip() if line else platform.processor()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a dump directory (DIR/<dataset> from ann_bench --dump)")
    p.add_argument("--m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=100)
    p.add_argument("--ef-sweep", default="32,64,96,128,192,256")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="build threads (queries are single-threaded)")
    p.add_argument("--libs", default="hnswlib,usearch")
    p.add_argument("--usearch-dtypes", default="f16", help="comma list of f16, f32")
    p.add_argument("--queries", type=int, default=0, help="use only the first N queries (0 = all)")
    p.add_argument("--seed", type=int, default=100, help="hnswlib random_seed")
    p.add_argument("--check", type=int, default=20, help="re-check the ground truth of this many queries with numpy")
    p.add_argument("--json-out", default=None)
    p.add_argument(
        "--cache-dir",
        default=None,
        help="save each built index here and load it on later runs (search-only reruns; no build time then)",
    )
    a = p.parse_args()

    efs = [int(x) for x in a.ef_sweep.split(",") if x.strip()]
    if not efs:
        sys.exit("--ef-sweep is empty")
    t0 = time.perf_counter()
    base = np.ascontiguousarray(np.load(os.path.join(a.data, "base.npy"), mmap_mode="r"), dtype=np.float32)
    queries = np.ascontiguousarray(np.load(os.path.join(a.data, "queries.npy")), dtype=np.float32)
    truth = np.load(os.path.join(a.data, "gt_ids.npy"))
    if a.queries:
        queries, truth = queries[: a.queries], truth[: a.queries]
    if truth.shape[1] < a.k:
        sys.exit(f"ground truth has {truth.shape[1]} columns, --k is {a.k}")
    truth = truth[:, : a.k]
    log(f"loaded {base.shape} base, {queries.shape} queries in {time.perf_counter() - t0:.1f} s")

    # The dump's ground truth must be what numpy computes on these very vectors.
    nc = min(a.check, len(queries))
    if nc:
        scores = queries[:nc] @ base.T
        for i in range(nc):
            order = np.lexsort((np.arange(base.shape[0]), -scores[i]))[: a.k]
            t = set(truth[i].tolist())
            if len(t & set(order.tolist())) < a.k - 1:  # allow one f32 rounding tie
                sys.exit(f"ground truth mismatch at query {i}: {sorted(t)} vs {sorted(order.tolist())}")
        log(f"ground truth re-checked with numpy on {nc} queries")
        del scores

    meta = {}
    try:
        with open(os.path.join(a.data, "meta.json")) as f:
            meta = json.load(f)
    except OSError:
        pass

    results = []
    for lib in [x.strip() for x in a.libs.split(",") if x.strip()]:
        if lib == "hnswlib":
            results.append(bench_hnswlib(base, queries, truth, a, efs))
        elif lib == "usearch":
            for dt in [x.strip() for x in a.usearch_dtypes.split(",") if x.strip()]:
                results.append(bench_usearch(base, queries, truth, a, efs, dt))
        else:
            sys.exit(f"unknown library {lib}")

    summary = {
        "data": os.path.abspath(a.data),
        "meta": meta,
        "n": int(base.shape[0]),
        "dim": int(base.shape[1]),
        "queries": int(len(queries)),
        "k": a.k,
        "build_threads": a.threads,
        "cpu": cpu_model(),
        "loadavg_end": list(os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "results": results,
    }
    text = json.dumps(summary)
    if a.json_out:
        with open(a.json_out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
