"""Threads and processes: one model shared by Python threads gives the same
rows as one thread; a process forked after import and after a first embed can
still embed (a hang is a failure: it is detected with a join timeout); and
seer starts no thread at import or while loading a model."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
from typing import Callable, List

import numpy as np
import pytest
from conftest import CLIP_OPENCLIP, MANY_FORMATS, RGB_FILES, TOKENIZER, load, same_bits

import seer

# Python 3.12+ warns when a process with threads forks: forking such a
# process is what these tests are about.
forking_with_threads = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

# How long a forked child may take before it counts as hung. Not a
# performance limit: the tiny model embeds these images in well under a second.
HANG = 300
LABELS = ["cat", "rocket", "coffee", "apple"]


def work(model: seer.Model):
    return (
        model.embed_images(MANY_FORMATS),
        model.embed_texts(["a cat", "a rocket", "two dogs"]),
        model.classify(RGB_FILES, LABELS, top_k=2),
    )


def test_four_threads_at_once_get_the_single_thread_results(clip: seer.Model) -> None:
    expected = work(clip)
    start = threading.Barrier(4)
    results: List[object] = [None] * 4
    failures: List[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            for _ in range(3):
                results[i] = work(clip)
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    for images, texts, classes in results:  # type: ignore[misc]
        assert same_bits(images, expected[0])
        assert same_bits(texts, expected[1])
        assert classes == expected[2]


def _in_child(queue, job: Callable[[], np.ndarray]) -> None:
    try:
        queue.put(("ok", job()))
    except BaseException as e:  # sent to the parent, which fails the test
        queue.put(("error", repr(e)))


def run_forked(job: Callable[[], np.ndarray]) -> np.ndarray:
    """Runs `job` in a forked child; fails if the child hangs or errs."""
    fork = multiprocessing.get_context("fork")
    queue = fork.Queue()
    child = fork.Process(target=_in_child, args=(queue, job))
    child.start()
    try:
        outcome, value = queue.get(timeout=HANG)
    except Exception:
        child.kill()
        child.join()
        pytest.fail(f"the forked child hung (no result in {HANG} s)")
    child.join(timeout=HANG)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the forked child hung on exit")
    assert outcome == "ok", value
    assert child.exitcode == 0
    return value


@forking_with_threads
def test_a_child_forked_after_a_first_embed_can_embed(clip: seer.Model) -> None:
    expected = clip.embed_images(MANY_FORMATS)  # the parent's pool is running now
    assert same_bits(run_forked(lambda: clip.embed_images(MANY_FORMATS)), expected)
    # A model loaded in the child works too, and the parent still does.
    child_loaded = run_forked(lambda: load(CLIP_OPENCLIP).embed_images(MANY_FORMATS))
    assert same_bits(child_loaded, expected)
    assert same_bits(clip.embed_images(MANY_FORMATS), expected)


@forking_with_threads
def test_a_child_forked_while_another_thread_embeds_can_embed(clip: seer.Model) -> None:
    """Forking while the parent's pool is busy (but no call of this thread is
    inside seer) is fine: the child starts its own pool."""
    expected = clip.embed_images(RGB_FILES)
    stop = threading.Event()

    def keep_busy() -> None:
        while not stop.is_set():
            clip.embed_texts(["busy"] * 8)

    busy = threading.Thread(target=keep_busy)
    busy.start()
    try:
        got = run_forked(lambda: clip.embed_images(RGB_FILES))
    finally:
        stop.set()
        busy.join()
    assert same_bits(got, expected)


# The scripts below run in a fresh interpreter; this lists its threads by name.
THREADS = r"""
import os

def threads(prefix):
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:  # a thread that just ended
            pass
    return sorted(n for n in names if n.startswith(prefix))
"""

SCRIPT = THREADS + r"""
import json, os, sys, time

def seer_threads():
    return threads("seer-")

def settled():
    # A joined thread can stay listed for a moment while the kernel reaps it.
    for _ in range(100):
        if not seer_threads():
            break
        time.sleep(0.01)
    return seer_threads()

import seer
report = {"import": seer_threads()}
model = seer.Model(sys.argv[1], tokenizer=sys.argv[2], offline=True)
report["load"] = settled()
files = sys.argv[3:]
first = model.embed_images(files)
report["embed"] = seer_threads()

def in_child():
    got = model.embed_images(files)
    return bool((got.view("u4") == first.view("u4")).all())

read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    os.write(write, b"1" if in_child() else b"0")
    os._exit(0)
os.close(write)
report["child_equal"] = os.read(read, 1) == b"1"
os.waitpid(pid, 0)
print(json.dumps(report))
"""


def test_no_thread_at_import_or_load_and_a_raw_fork_after_embed_works() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(CLIP_OPENCLIP), str(TOKENIZER), *map(str, RGB_FILES)],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["import"] == []
    assert report["load"] == []
    # The shared pool's workers, and the one-thread pools of batches run one part per thread.
    assert report["embed"] and all(n.startswith(("seer-worker-", "seer-part")) for n in report["embed"])
    assert report["child_equal"] is True


@forking_with_threads
def test_a_model_loaded_before_the_fork_and_never_used_there_works_in_the_child() -> None:
    model = load(CLIP_OPENCLIP)
    got = run_forked(lambda: model.embed_images(RGB_FILES))
    assert same_bits(got, model.embed_images(RGB_FILES))


CANDLE_SCRIPT = THREADS + r"""
import json, os, signal, sys
import seer

# Batches of 256 make candle's element-wise ops large enough (>= 64K values)
# for its own thread pool, which a real-size model reaches at any batch.
model = seer.Model(sys.argv[1], tokenizer=sys.argv[2], offline=True, batch_size=256)
files = sys.argv[3:] * (256 // len(sys.argv[3:]) + 1)
first = model.embed_images(files)
report = {"candle_threads": threads("candle-"), "env": os.environ.get("CANDLE_NUM_THREADS")}
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    signal.alarm(120)  # a hang ends the child, and the report says so
    os.close(read)
    got = model.embed_images(files)
    os.write(write, b"1" if (got.view("u4") == first.view("u4")).all() else b"0")
    os._exit(0)
os.close(write)
report["child_equal"] = os.read(read, 1) == b"1"
report["child_status"] = os.waitpid(pid, 0)[1]
print(json.dumps(report))
"""


def test_a_child_forked_after_large_batches_does_not_wait_for_candle_s_threads() -> None:
    """candle runs large element-wise ops on a global pool of its own threads,
    which a forked child does not have: its first such op spun forever waiting
    for them (seen with ViT-B/32 under multiprocessing). The package keeps that
    pool threadless (CANDLE_NUM_THREADS=1), so the child computes inline."""
    done = subprocess.run(
        [sys.executable, "-c", CANDLE_SCRIPT, str(CLIP_OPENCLIP), str(TOKENIZER), *map(str, RGB_FILES)],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["child_status"] == 0, "the forked child hung (killed by its alarm)"
    assert report["child_equal"] is True
    assert report["candle_threads"] == [] and report["env"] == "1"
