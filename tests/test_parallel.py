"""CPU speed settings: row-parallel kernels (backend.parallel_rows) — the split, the join,
errors, and that the fused ops give the same bits on any number of threads — and the
process settings `import minirl` makes (OpenBLAS's spin, malloc's reuse of freed memory)."""

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from minirl import backend
from minirl import functional as F
from minirl.tensor import Tensor


@pytest.fixture
def threads(monkeypatch):
    """Split everything, however small, across the given number of threads."""
    monkeypatch.setattr(backend, "PARALLEL_MIN_SIZE", 1)
    previous = backend.num_threads()
    yield backend.set_num_threads
    backend.set_num_threads(previous)


def test_blocks_cover_every_row_once_on_several_threads(threads):
    threads(3)
    x = np.arange(20.0).reshape(10, 2)
    out = np.zeros_like(x)
    seen = []

    def kernel(x, out):
        seen.append((x.shape[0], threading.current_thread().name))
        out[...] = 2 * x
    backend.parallel_rows(kernel, x, out)
    np.testing.assert_array_equal(out, 2 * x)
    assert sorted(n for n, _ in seen) == [3, 3, 4]
    names = {name for _, name in seen}  # a quick worker may take two blocks
    assert threading.current_thread().name in names and any(n.startswith("minirl") for n in names)


def test_small_arrays_stay_on_the_calling_thread():
    backend.set_num_threads(2)
    names = []
    backend.parallel_rows(lambda x: names.append(threading.current_thread().name), np.zeros((4, 4)))
    assert names == [threading.current_thread().name]


def test_a_worker_exception_reaches_the_caller(threads):
    threads(2)

    def kernel(x):
        if x[0, 0] > 0:  # only the second block, which runs on the worker
            raise ValueError("bad block")
    with pytest.raises(ValueError, match="bad block"):
        backend.parallel_rows(kernel, np.arange(4.0).reshape(4, 1))


def test_a_nested_call_runs_inline_instead_of_deadlocking(threads):
    threads(2)  # one worker: a nested submit that waited for it would never return
    out = np.zeros((8, 3))

    def inner(o):
        o += 1

    def outer(o):
        backend.parallel_rows(inner, o)
    with ThreadPoolExecutor(1) as watchdog:
        watchdog.submit(backend.parallel_rows, outer, out).result(timeout=30)
    np.testing.assert_array_equal(out, 1)


def test_blocks_run_with_one_blas_thread_and_the_count_comes_back(threads):
    calls = backend._openblas_thread_calls()
    if calls is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS this process can find")
    threads(2)
    _, blas_count = calls
    seen = []
    with backend.blas_threads(2):
        backend.parallel_rows(lambda x: seen.append(blas_count()), np.zeros((4, 4)))
        assert blas_count() == 2  # restored after the blocks
    assert seen == [1, 1]  # a matmul inside a block does not split across the cores again


def test_a_product_with_few_rows_runs_on_one_blas_thread(monkeypatch):
    asked = []
    real = backend.blas_threads
    monkeypatch.setattr(backend, "blas_threads", lambda n: asked.append(n) or real(n))
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 5)).astype(np.float32)
    for rows in (1, backend.FEW_ROWS - 1, backend.FEW_ROWS):
        a = rng.standard_normal((rows, 8)).astype(np.float32)
        np.testing.assert_array_equal(backend.gemm(a, w), a @ w)
    assert asked == [1, 1]  # the sampling-sized products, not the one with FEW_ROWS rows


def test_thread_count_setting_is_validated(monkeypatch):
    with pytest.raises(ValueError, match="positive integer"):
        backend.set_num_threads(0)
    code = "from minirl import backend; backend.num_threads()"
    bad = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MINIRL_NUM_THREADS": "two"},
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "MINIRL_NUM_THREADS must be a positive integer, got 'two'" in bad.stderr


def test_importing_minirl_first_lets_openblas_workers_sleep():
    code = "import os, minirl; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "4"
    kept = subprocess.run([sys.executable, "-c", code], env={**env, "OPENBLAS_THREAD_TIMEOUT": "28"},
                          capture_output=True, text=True)
    assert kept.stdout.strip() == "28"  # the user's own setting wins


_RSS_AFTER_FREE = """
import numpy as np, minirl
def rss():  # resident pages of this process
    return int(open("/proc/self/statm").read().split()[1])
a = np.ones(4 << 20, dtype=np.float32)  # 16 MB, written so its pages are resident
before = rss(); del a
print(before - rss())  # pages handed back to the OS by the free
"""


@pytest.mark.skipif(not (sys.platform.startswith("linux") and os.path.exists("/proc/self/statm")),
                    reason="reading the resident set needs Linux /proc")
def test_freed_arrays_stay_with_the_process_for_reuse_unless_turned_off():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run = lambda flag: int(subprocess.run([sys.executable, "-c", _RSS_AFTER_FREE], capture_output=True, text=True,  # noqa: E731
                                          env={**env, "MINIRL_KEEP_FREED_MEMORY": flag}, check=True).stdout)
    pages = (16 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert run("1") < pages // 10  # kept: the next 16 MB array reuses these pages, no page faults
    assert run("0") > pages // 2  # glibc's default: unmapped at once


def _fused_cases(rng):
    x = rng.standard_normal((6, 7, 33)).astype(np.float32)
    w, b = rng.standard_normal(33).astype(np.float32), rng.standard_normal(33).astype(np.float32)
    targets = rng.integers(0, 33, (6, 7))
    q, k, v = (rng.standard_normal((5, 2, 9, 4)).astype(np.float32) for _ in range(3))
    key_mask = rng.random((5, 9)) < 0.8
    return {
        "gelu": (F.gelu, [x]),
        "layer_norm": (F.layer_norm, [x, w, b]),
        "log_softmax": (F.log_softmax, [x]),
        "softmax": (F.softmax, [x]),
        "cross_entropy": (lambda z: F.cross_entropy(z, targets), [x]),
        "attention": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, key_mask=key_mask), [q, k, v]),
        "attention_qkv": (lambda x: F.attention_qkv(x.transpose(2, 0, 3, 1, 4), key_mask=key_mask),
                          [np.stack([q, k, v]).transpose(1, 3, 0, 2, 4).copy()]),  # (B, T, 3, nh, hs), as the model's
    }


@pytest.mark.parametrize("name", ["gelu", "layer_norm", "log_softmax", "softmax", "cross_entropy", "attention",
                                  "attention_qkv"])
def test_fused_ops_give_the_same_bits_on_one_and_three_threads(threads, name):
    results = []
    for n in (1, 3):
        threads(n)
        op, arrays = _fused_cases(np.random.default_rng(0))[name]
        inputs = [Tensor(a, requires_grad=True) for a in arrays]
        out = op(*inputs)
        out.backward(np.random.default_rng(1).standard_normal(out.shape).astype(np.float32))
        results.append([out.numpy()] + [t.grad for t in inputs])
    for one, three in zip(*results):
        np.testing.assert_array_equal(one, three)
