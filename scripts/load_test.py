#!/usr/bin/env python3
"""Load test for `seer serve` (Python 3.11 standard library only).

    python3 scripts/load_test.py --url http://127.0.0.1:7860 --clients 64 --seconds 60 \
        [--token T] [--image PATH] [--mix 0.5] [--pid PID] [--json]

Runs --clients threads, each with its own keep-alive connection, for --seconds (and at
most --max-requests requests in all), mixing text searches
(GET /v1/search?q=<random words>&k=10) with image embeds (POST /v1/embed with the
base64 of --image, or of a small built-in PNG). Reports requests/s, p50/p99 latency per
kind and overall, counts by status (503 is the server's deliberate backpressure and is
counted apart; any other non-2xx or exception is an error) and, with --pid, the server's
RSS at start, after the warm-up and at the end.

Only loopback servers are accepted (127.0.0.0/8, localhost, ::1). Exits 1 when there
were errors other than 503s, 2 on bad arguments or an unreachable server.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import ipaddress
import itertools
import json
import math
import os
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from collections import Counter, defaultdict

WORDS = [
    "cat", "dog", "car", "beach", "sunset", "mountain", "city", "street", "night", "snow",
    "forest", "river", "boat", "bird", "flower", "tree", "house", "bridge", "train", "bicycle",
    "red", "blue", "green", "old", "small", "a person", "two people", "children", "food",
    "coffee", "cake", "apple", "horse", "chess", "book", "camera", "rocket", "astronaut",
    "kitten", "parrot", "truck", "motorcycle", "lake", "clouds", "portrait", "landscape",
]
PREFIXES = ["", "", "a photo of ", "a picture of ", "an image of "]
KINDS = ("search", "embed")


def die(message: str, code: int = 2) -> None:
    print(f"load_test: {message}", file=sys.stderr)
    sys.exit(code)


# --------------------------------------------------------------------- target checks


def loopback_target(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of url, refusing anything that is not a loopback address."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        die(f"--url must be http:// or https://, not {url!r}")
    host = parsed.hostname
    if not host:
        die(f"--url has no host: {url!r}")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        die(f"--url has a bad port: {url!r}")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        die(f"--url must be the server's base URL (no path), not {url!r}")
    if host.lower() == "localhost":
        # Trust the name only if it resolves to loopback addresses and nothing else.
        try:
            addrs = {ai[4][0] for ai in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
        except OSError as e:
            die(f"cannot resolve localhost: {e}")
        if not addrs or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
            die(f"localhost resolves to non-loopback addresses {sorted(addrs)}; refusing")
        return parsed.scheme, host, port
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        die(f"refusing {host!r}: only loopback addresses (127.0.0.0/8, localhost, ::1) may be load-tested")
    if not ip.is_loopback:
        die(f"refusing {host}: only loopback addresses (127.0.0.0/8, localhost, ::1) may be load-tested")
    return parsed.scheme, host, port


# --------------------------------------------------------------------- a built-in image


def builtin_png(width: int = 96, height: int = 64) -> bytes:
    """A small RGB gradient PNG, for when no --image is given."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            rows += bytes((x * 255 // width, y * 255 // height, 128))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b""))


# --------------------------------------------------------------------- memory


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


# --------------------------------------------------------------------- the run


class Stats:
    """Per-thread results, merged at the end (no lock on the hot path)."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)  # 2xx only
        self.busy_latency: list[float] = []
        self.status: dict[str, Counter] = defaultdict(Counter)
        self.errors: list[str] = []

    def merge(self, other: "Stats") -> None:
        for k, v in other.latency.items():
            self.latency[k].extend(v)
        self.busy_latency.extend(other.busy_latency)
        for k, c in other.status.items():
            self.status[k].update(c)
        if len(self.errors) < 10:
            self.errors.extend(other.errors[: 10 - len(self.errors)])


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def make_connection(scheme: str, host: str, port: int, timeout: float) -> http.client.HTTPConnection:
    if scheme == "https":
        import ssl

        ctx = ssl.create_default_context()
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    return http.client.HTTPConnection(host, port, timeout=timeout)


def worker(
    n: int,
    args: argparse.Namespace,
    target: tuple[str, str, int],
    embed_body: bytes,
    deadline: float,
    counter: "itertools.count[int]",
    stop: threading.Event,
    out: list[Stats],
) -> None:
    scheme, host, port = target
    rng = random.Random(args.seed * 1000 + n)
    stats = Stats()
    out[n] = stats
    headers = {"Connection": "keep-alive", "Accept": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    embed_headers = {**headers, "Content-Type": "application/json"}
    conn = make_connection(scheme, host, port, args.request_timeout)
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if next(counter) >= args.max_requests:
                break
            kind = "embed" if rng.random() < args.mix else "search"
            if kind == "search":
                words = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
                q = urllib.parse.quote(rng.choice(PREFIXES) + words)
                method, path, body, hdrs = "GET", f"/v1/search?q={q}&k=10", None, headers
            else:
                method, path, body, hdrs = "POST", "/v1/embed", embed_body, embed_headers
            start = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                elapsed = time.perf_counter() - start
            except (OSError, http.client.HTTPException) as e:
                stats.status[kind][f"exception:{type(e).__name__}"] += 1
                if len(stats.errors) < 10:
                    stats.errors.append(f"{kind}: {type(e).__name__}: {e}")
                conn.close()
                conn = make_connection(scheme, host, port, args.request_timeout)
                stop.wait(0.05)  # do not spin on a server that is gone
                continue
            code = resp.status
            if 200 <= code < 300:
                problem = check_body(kind, data)
                if problem:
                    stats.status[kind]["bad-body"] += 1
                    if len(stats.errors) < 10:
                        stats.errors.append(f"{kind}: {code} with {problem}")
                else:
                    stats.status[kind][str(code)] += 1
                    stats.latency[kind].append(elapsed)
            elif code == 503:
                stats.status[kind]["503"] += 1
                stats.busy_latency.append(elapsed)
                # Back off as asked (capped, jittered, and never past the deadline).
                try:
                    after = float(resp.getheader("Retry-After") or 1)
                except ValueError:
                    after = 1.0
                pause = min(max(after, 0.05), args.max_backoff) * (0.5 + rng.random())
                stop.wait(max(0.0, min(pause, deadline - time.monotonic())))
            else:
                stats.status[kind][str(code)] += 1
                if len(stats.errors) < 10:
                    stats.errors.append(f"{kind}: {code} {data[:200].decode('utf-8', 'replace')}")
            if resp.will_close:
                conn.close()
                conn = make_connection(scheme, host, port, args.request_timeout)
    finally:
        conn.close()


def check_body(kind: str, data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return "a body that is not JSON"
    if kind == "search":
        if not isinstance(doc.get("results"), list):
            return "no results list"
    elif not doc.get("embeddings") or not doc["embeddings"][0].get("embedding"):
        return "no embeddings"
    return None


def preflight(args: argparse.Namespace, target: tuple[str, str, int]) -> None:
    scheme, host, port = target
    conn = make_connection(scheme, host, port, 10)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            die(f"GET /healthz answered {resp.status}: {body[:200]!r}")
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        conn.request("GET", "/v1/search?q=warm+up&k=1", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status == 401:
            die("the server wants a token: pass --token" if not args.token else "the server refused --token")
        if resp.status >= 400 and resp.status != 503:
            die(f"GET /v1/search answered {resp.status}: {body[:200]!r}")
    except OSError as e:
        die(f"cannot reach {args.url}: {e}")
    finally:
        conn.close()


def summarize(kind_lat: list[float], status: Counter, seconds: float) -> dict:
    lat = sorted(kind_lat)
    total = sum(status.values())
    ok = sum(v for k, v in status.items() if k.isdigit() and 200 <= int(k) < 300)
    busy = status.get("503", 0)
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    return {
        "requests": total,
        "ok": ok,
        "busy_503": busy,
        "errors": total - ok - busy,
        "requests_per_s": round(total / seconds, 1) if seconds > 0 else 0.0,
        "ok_per_s": round(ok / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": ms(percentile(lat, 50)),
        "p90_ms": ms(percentile(lat, 90)),
        "p99_ms": ms(percentile(lat, 99)),
        "max_ms": ms(lat[-1] if lat else None),
        "status": dict(sorted(status.items())),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:7860", help="server base URL (loopback only)")
    ap.add_argument("--clients", type=int, default=64, help="concurrent client threads (default 64)")
    ap.add_argument("--seconds", type=float, default=60, help="duration (default 60)")
    ap.add_argument("--max-requests", type=int, default=200_000, help="stop after this many requests in all")
    ap.add_argument("--token", default=os.environ.get("SEER_TOKEN"), help="bearer token (default $SEER_TOKEN)")
    ap.add_argument("--image", help="image file to embed (default: a small built-in PNG)")
    ap.add_argument("--mix", type=float, default=0.5, help="share of requests that are image embeds (0..1)")
    ap.add_argument("--pid", type=int, help="server process id, to sample its RSS")
    ap.add_argument("--warmup", type=float, default=10, help="seconds before the post-warm-up RSS sample")
    ap.add_argument("--request-timeout", type=float, default=90, help="seconds per request before it is an error")
    ap.add_argument("--max-backoff", type=float, default=5, help="longest pause after a 503 (seconds)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()

    if not 1 <= args.clients <= 1024:
        die("--clients must be 1..1024")
    if not 0 < args.seconds <= 3600:
        die("--seconds must be in (0, 3600]")
    if not 1 <= args.max_requests <= 10_000_000:
        die("--max-requests must be 1..10,000,000")
    if not 0 <= args.mix <= 1:
        die("--mix must be between 0 and 1")
    target = loopback_target(args.url)
    if args.pid is not None and rss_kib(args.pid) is None:
        die(f"cannot read /proc/{args.pid}/status (is --pid the server's process id?)")

    if args.image:
        try:
            with open(args.image, "rb") as f:
                image = f.read()
        except OSError as e:
            die(f"cannot read --image: {e}")
        image_name = args.image
    else:
        image, image_name = builtin_png(), "built-in 96x64 PNG"
    embed_body = json.dumps({"images": [base64.b64encode(image).decode("ascii")]}).encode()

    preflight(args, target)

    rss: dict[str, int | None] = {}
    peak = [0]
    if args.pid is not None:
        rss["start"] = rss_kib(args.pid)

    stop = threading.Event()
    counter = itertools.count()
    started = time.monotonic()
    deadline = started + args.seconds
    results: list[Stats] = [Stats() for _ in range(args.clients)]
    threads = [
        threading.Thread(target=worker, name=f"client-{i}", daemon=True,
                         args=(i, args, target, embed_body, deadline, counter, stop, results))
        for i in range(args.clients)
    ]
    for t in threads:
        t.start()

    # Sample memory once a second while the clients run.
    warm_at = started + min(args.warmup, args.seconds)
    try:
        while any(t.is_alive() for t in threads):
            now = time.monotonic()
            if args.pid is not None:
                v = rss_kib(args.pid)
                if v:
                    peak[0] = max(peak[0], v)
                if "warm" not in rss and now >= warm_at:
                    rss["warm"] = v
            if now > deadline + args.request_timeout + 5:
                break  # threads stuck past their own timeout: give up on them
            time.sleep(0.2 if now < deadline else 0.05)
    except KeyboardInterrupt:
        stop.set()
    stop.set()
    for t in threads:
        t.join(timeout=max(0.1, deadline + args.request_timeout + 5 - time.monotonic()))
    elapsed = time.monotonic() - started
    if args.pid is not None:
        rss["end"] = rss_kib(args.pid)
        rss.setdefault("warm", rss["end"])

    merged = Stats()
    for s in results:
        merged.merge(s)
    overall_status: Counter = Counter()
    for c in merged.status.values():
        overall_status.update(c)
    all_lat = [x for k in KINDS for x in merged.latency.get(k, [])]
    report = {
        "url": args.url,
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "mix_embed": args.mix,
        "image": image_name,
        "overall": summarize(all_lat, overall_status, elapsed),
        "kinds": {k: summarize(merged.latency.get(k, []), merged.status.get(k, Counter()), elapsed)
                  for k in KINDS},
        "error_samples": merged.errors,
        "stopped_by": "max-requests" if sum(overall_status.values()) >= args.max_requests else "deadline",
    }
    if merged.busy_latency:
        report["overall"]["busy_p50_ms"] = round(percentile(sorted(merged.busy_latency), 50) * 1000, 2)
    if args.pid is not None:
        start, warm, end = rss.get("start"), rss.get("warm"), rss.get("end")
        report["rss_kib"] = {
            "pid": args.pid,
            "start": start,
            "after_warmup": warm,
            "end": end,
            "peak": peak[0] or None,
            "growth_after_warmup_pct": round((end - warm) / warm * 100, 2) if warm and end else None,
        }

    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
    return 1 if report["overall"]["errors"] else 0


def print_table(r: dict) -> None:
    fmt = lambda v: "-" if v is None else (f"{v:,.1f}" if isinstance(v, float) else f"{v:,}")  # noqa: E731
    print(f"seer load test: {r['url']}, {r['clients']} clients, {r['seconds']} s, "
          f"{int(r['mix_embed'] * 100)}% embeds of {r['image']} (stopped by {r['stopped_by']})")
    cols = ["kind", "requests", "req/s", "ok", "503", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    rows = []
    for name, s in [*r["kinds"].items(), ("overall", r["overall"])]:
        rows.append([name, fmt(s["requests"]), fmt(s["requests_per_s"]), fmt(s["ok"]), fmt(s["busy_503"]),
                     fmt(s["errors"]), fmt(s["p50_ms"]), fmt(s["p90_ms"]), fmt(s["p99_ms"]), fmt(s["max_ms"])])
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(cols))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    print("status counts: " + ", ".join(f"{k}={v:,}" for k, v in r["overall"]["status"].items()))
    if "busy_p50_ms" in r["overall"]:
        print(f"503 backpressure answers: p50 {r['overall']['busy_p50_ms']} ms")
    if "rss_kib" in r:
        m = r["rss_kib"]
        mib = lambda v: "-" if v is None else f"{v / 1024:,.1f} MiB"  # noqa: E731
        growth = m["growth_after_warmup_pct"]
        print(f"server RSS (pid {m['pid']}): start {mib(m['start'])}, after warm-up {mib(m['after_warmup'])}, "
              f"end {mib(m['end'])}, peak {mib(m['peak'])}, growth after warm-up "
              f"{'-' if growth is None else f'{growth:+.2f}%'}")
    if r["error_samples"]:
        print("errors (first few):")
        for e in r["error_samples"]:
            print(f"  {e}")
    print("result: " + ("FAIL, errors other than 503" if r["overall"]["errors"] else "ok, no errors"))


if __name__ == "__main__":
    sys.exit(main())
