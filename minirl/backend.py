"""The array backend: NumPy or CuPy, chosen in this one file.

Everything else in minirl asks this module for the array module `xp` instead of
importing numpy or cupy itself (the chainer / array-API pattern)::

    xp = backend.xp()                  # the active module, for new arrays
    xp = backend.get_array_module(a)   # the module that owns array `a`

Select the backend with the environment variable ``MINIRL_BACKEND=numpy|cupy``
(read on first use) or with ``backend.use("cupy")``. Only this file imports cupy.

The boundary rule: every public function of minirl moves host inputs (NumPy arrays,
lists, scalars) to the active backend on entry, with `to_backend`, and returns arrays of
the active backend; read them back with `to_numpy`. CuPy refuses NumPy operands, so
without the rule a helper handed a NumPy mask on the GPU would crash mid-way.

Host synchronisations: on a GPU, every ``float()``, ``int()``, ``bool()``, ``.item()`` or
boolean-mask index waits for the device and reads it back. Hot loops keep their values on
the device; integer ids are range-checked by `check_range` where they are host data (a
user's prompts, targets, indices), since CuPy wraps an out-of-range index silently, while
ids that are already on the device (sampled tokens, positions) are trusted on CuPy, where
a check would cost a sync. `poll_interval` says how often a loop may read a device flag.

Determinism: on NumPy a seed and a config fix every bit of a run, and a checkpoint
resumes it bit for bit (weights, AdamW moments, both generators, the step). On CuPy a
resumed run restores the host generator (initialisation, data order), the weights and the
optimizer exactly, but re-seeds the device generator (dropout, sampling): CuPy's
generator state cannot be saved. The embedding backward is the same bits on every run on
both (`embedding_grad`); the backwards of `gather` and of advanced indexing scatter-add
with atomics on CuPy, so there their sums may round differently from run to run.

Random numbers come from two generators, both seeded by `manual_seed`:
`host_rng()` is always NumPy and draws parameter initialisations and data
shuffles, so a model starts identical on either backend; `device_rng()` lives on
the active backend and draws dropout masks and samples without a host round trip.

CPU threads: BLAS already runs each matmul on every core, but NumPy runs every other
operation (exp, multiply, a row sum) on one. `parallel_rows` hands row blocks of the
fused kernels (GELU, softmax and cross-entropy, layer norm, attention) to a small
thread pool; NumPy releases the GIL inside each ufunc, so the blocks really run at
once. ``MINIRL_NUM_THREADS`` sets the pool size (default: the CPUs this process may
use). Inside the blocks NumPy's OpenBLAS runs on one thread (`blas_threads`), so a
matmul in a block does not split across cores the pool already fills. OpenBLAS keeps
its idle workers spinning for about 0.1 s after every matmul, which would take the very
core the pool needs, so `import minirl` asks them to sleep at once
(``OPENBLAS_THREAD_TIMEOUT=4``) when it runs before numpy is first imported.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import numpy as np

BACKENDS = ("numpy", "cupy")

_active: str | None = None
_default_dtype = np.float32
_seed = 0
_host_rng: np.random.Generator | None = None
_device_rng: Any = None
_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
PARALLEL_MIN_SIZE = 1 << 16
"""Arrays with fewer elements than this run on the calling thread: below ~64k elements
handing a block to another thread costs more than it saves (tests set it to 1)."""
_in_parallel = threading.local()  # .active is True on a thread running a parallel_rows block
_installed_cupy: tuple | None = None  # (cupy, cupyx) served instead of importing CuPy; see install_cupy


class BackendError(RuntimeError):
    """The requested backend cannot be used here; the message says why and what to do."""


def _import_cupy():
    """Import cupy and prove a GPU is usable, or raise one BackendError naming the case."""
    try:
        import cupy
    except ImportError as e:
        raise BackendError(
            "the cupy backend was requested but cupy is not installed. Install the wheel for the "
            "CUDA major version your driver reports (nvidia-smi): `pip install -e \".[gpu-cuda13]\"` "
            "(cupy-cuda13x) or `pip install -e \".[gpu-cuda12]\"` (cupy-cuda12x), never both; "
            "or use the numpy backend (MINIRL_BACKEND=numpy)."
        ) from e
    try:
        available = bool(cupy.cuda.is_available())
    except Exception:  # a broken CUDA install raises instead of answering
        available = False
    if not available:
        raise BackendError(
            "the cupy backend was requested and cupy is installed, but no CUDA GPU is "
            "visible (cupy.cuda.is_available() is False). Run on a machine with an "
            "NVIDIA GPU and driver, or use the numpy backend (MINIRL_BACKEND=numpy)."
        )
    return cupy


def install_cupy(cupy_module, cupyx_module) -> None:
    """Serve `cupy_module` and `cupyx_module` as the cupy backend instead of importing CuPy;
    ``install_cupy(None, None)`` goes back to the real import.

    For the test suite only: it installs its strict CPU stand-in for CuPy
    (``tests/cupy_standin``) here, so the cupy code path runs on every CI machine.
    """
    global _installed_cupy, _active, _device_rng
    if _active == "cupy":
        _active, _device_rng = None, None  # arrays of the old module must not meet the new one
    _installed_cupy = None if cupy_module is None else (cupy_module, cupyx_module)


def _cupyx():
    if _installed_cupy is not None:
        return _installed_cupy[1]
    import cupyx

    return cupyx


def cupy_available() -> bool:
    """True when cupy imports and a GPU is present, so the cupy backend would work."""
    try:
        _import_cupy()
    except BackendError:
        return False
    return True


def _module(name: str):
    if name == "numpy":
        return np
    if name == "cupy":
        return _installed_cupy[0] if _installed_cupy is not None else _import_cupy()
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(map(repr, BACKENDS))}.")


def use(name: str) -> None:
    """Make `name` ('numpy' or 'cupy') the active backend; new tensors are created there."""
    global _active, _device_rng
    if not isinstance(name, str):
        raise BackendError(f"backend name must be a string, got {type(name).__name__}.")
    name = name.strip().lower()
    if name == _active:
        return  # keep the device generator's stream where it is
    _module(name)  # fail now, with the clear error, rather than at the first array
    _active = name
    _device_rng = None  # re-created on the new backend from the same seed


def name() -> str:
    """The active backend's name; resolves MINIRL_BACKEND on first call."""
    if _active is None:
        use(os.environ.get("MINIRL_BACKEND", "numpy") or "numpy")
    return _active


def xp():
    """The active array module (numpy or cupy)."""
    return _module(name())


@contextlib.contextmanager
def using(backend_name: str) -> Iterator[None]:
    """Temporarily switch backend: ``with backend.using("cupy"): ...``."""
    previous = name()
    use(backend_name)
    try:
        yield
    finally:
        use(previous)


def get_array_module(*arrays):
    """numpy or cupy, whichever owns the arrays (numpy for Python scalars and lists)."""
    for a in arrays:
        if type(a) is not np.ndarray and type(a).__module__.startswith("cupy"):
            return _module("cupy")
    return np


def to_numpy(a) -> np.ndarray:
    """Copy an array of either backend (or a scalar) to a NumPy array on the host."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def to_backend(a, backend_name: str | None = None, dtype=None):
    """Move an array (either backend, or anything array-like) onto `backend_name`
    (default: the active backend), optionally casting to `dtype`."""
    target = _module(backend_name or name())
    if target is np:
        return np.asarray(to_numpy(a), dtype=dtype)
    return target.asarray(a, dtype=dtype)


def default_dtype():
    """The float dtype for new tensors and parameters: float32 unless changed."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Use float32 for speed, float64 for finite-difference gradient checks."""
    global _default_dtype
    dtype = np.dtype(dtype).type
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"default dtype must be float32 or float64, got {np.dtype(dtype).name}.")
    _default_dtype = dtype


@contextlib.contextmanager
def dtype_context(dtype) -> Iterator[None]:
    """Temporarily change the default float dtype: ``with dtype_context(np.float64): ...``."""
    previous = _default_dtype
    set_default_dtype(dtype)
    try:
        yield
    finally:
        set_default_dtype(previous)


def rng(seed: int, backend_name: str | None = None):
    """A new seeded random Generator on `backend_name` (default: the active backend)."""
    module = _module(backend_name or name())
    return module.random.default_rng(seed)


def manual_seed(seed: int) -> None:
    """Seed minirl's global generators, so a seed and a config fully determine a run."""
    global _seed, _host_rng, _device_rng
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    _seed = int(seed)
    _host_rng = None
    _device_rng = None


def host_rng() -> np.random.Generator:
    """The global NumPy generator: parameter init and data order. Identical on every backend."""
    global _host_rng
    if _host_rng is None:
        _host_rng = np.random.default_rng(np.random.SeedSequence(_seed).spawn(2)[0])
    return _host_rng


def device_rng():
    """The global generator on the active backend: dropout masks and sampling."""
    global _device_rng
    if _device_rng is None:
        stream = np.random.SeedSequence(_seed).spawn(2)[1]
        if name() == "numpy":
            _device_rng = np.random.default_rng(stream)
        else:
            _device_rng = xp().random.default_rng(int(stream.generate_state(1)[0]))
    return _device_rng


def rng_state() -> dict:
    """The global generators' state as plain JSON-able data, for checkpoints.

    On cupy only the host stream (init, data order) is saved: a resumed GPU run
    re-seeds its device stream (dropout, sampling), so it is exact on CPU only.
    """
    state = {"seed": _seed, "host": host_rng().bit_generator.state}
    if name() == "numpy":
        state["device"] = device_rng().bit_generator.state
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned, so a resumed run draws the same numbers."""
    manual_seed(state["seed"])
    host_rng().bit_generator.state = state["host"]
    if "device" in state and name() == "numpy":
        device_rng().bit_generator.state = state["device"]


def check_range(ids, low: int, high: int, message: str, counted=None) -> None:
    """Raise ValueError(message.format(bad=...)) if host integer `ids` hold a value outside
    [low, high) (only where `counted` is nonzero, when given; a `counted` on the GPU is read
    back). Arrays on a GPU are not checked: the answer would cost a host sync, and minirl's
    own device ids (sampled tokens, positions) are in range by construction."""
    if type(ids) is not np.ndarray and type(ids).__module__.startswith("cupy"):
        return
    ids = np.asarray(ids)
    if counted is not None:
        ids = ids[to_numpy(counted) != 0]
    if ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < low or hi >= high:
            raise ValueError(message.format(bad=hi if hi >= high else lo))


def poll_interval() -> int:
    """Steps between reads of a device flag in a loop (e.g. "has every row stopped?"): 1 on
    NumPy, where reading is free; 8 on CuPy, where each read waits for the GPU."""
    return 1 if name() == "numpy" else 8


def sum_last_axis(a, other=None, out=None):
    """``Σ_k a[..., k]`` (or ``Σ_k a[..., k]·other[..., k]``), shape ``a.shape[:-1]``; written
    into `out` (that shape) when given.

    NumPy: an einsum, 2-4× faster than ``a.sum(axis=-1)`` (whose reduction loop restarts
    on every short row) and with no temporary for the product. CuPy: a plain reduction;
    its einsum re-parses the subscripts on every call and turns the two-operand form into
    a batched matmul.
    """
    if get_array_module(a) is np:
        operands = ("...k->...", a) if other is None else ("...k,...k->...", a, other)
        if out is None:
            return np.einsum(*operands)
        np.einsum(*operands, out=out)
        return out
    total = (a if other is None else a * other).sum(axis=-1)
    if out is None:
        return total
    out[...] = total
    return out


def column_dot(a, b):
    """``Σ_i a[i, j]·b[i, j]`` of two (N, C) arrays, shape (C,): an einsum on NumPy (no
    temporary), a product and a reduction on CuPy (see `sum_last_axis` for why)."""
    if get_array_module(a) is np:
        return np.einsum("ij,ij->j", a, b)
    return (a * b).sum(axis=0)


def sum_of_squares(arrays):
    """``Σ_arrays Σ a²`` as a 0-d float64 array on the arrays' backend, with no host sync.

    NumPy: one BLAS dot product per array in its own dtype, redone in float64 where that
    overflowed (float32 squares overflow for |a| beyond ~1.8e19). CuPy: each array's
    squares summed in float64 on the device, which cannot overflow.
    """
    xp = get_array_module(*arrays)
    if xp is np:
        total = 0.0
        for a in arrays:
            sq = float(np.vdot(a, a))
            total += sq if np.isfinite(sq) else float((a.astype(np.float64) ** 2).sum())
        return np.asarray(total)
    return sum(xp.square(a, dtype=xp.float64).sum() for a in arrays)


def embedding_grad(ids, g, rows: int):
    """``dW[v] = Σ_{n: ids[n] = v} g[n]``: the (rows, C) gradient of a table lookup, from
    ids (N,) and the rows' gradients g (N, C), the same bits on every run.

    NumPy: ``add.at`` into the flattened table (one index per element: much faster on 1-D).
    CuPy: a one-hot (rows, N) @ (N, C) matmul, since its scatter-add uses atomics whose
    order, and so rounding, changes from run to run.
    """
    N, C = g.shape
    xp = get_array_module(g)
    if xp is np:
        dw = np.zeros(rows * C, dtype=g.dtype)
        np.add.at(dw, (ids.reshape(-1, 1) * C + np.arange(C)).reshape(-1), g.reshape(-1))  # (N·C,) positions
        return dw.reshape(rows, C)
    onehot = xp.zeros((rows, N), dtype=g.dtype)
    onehot[ids, xp.arange(N)] = 1  # one entry per column: a plain write, no atomics
    return onehot @ g


def scatter_add(target, indices, values) -> None:
    """In place ``target[indices] += values``, summing repeated indices (the backward of a gather).

    Both libraries spell it ``add.at``. On CuPy it adds with atomics, so the order of a
    repeated index's additions, and so the float32 sum's last bit, can differ from run to run.
    """
    get_array_module(target).add.at(target, indices, values)


def einsum_into(subscripts: str, *operands, out) -> None:
    """``out[...] = einsum(subscripts, *operands)`` without a temporary where the library allows.

    NumPy's einsum writes into `out` directly; CuPy's takes no `out`, so there the
    result is computed and then assigned.
    """
    if get_array_module(out) is np:
        np.einsum(subscripts, *operands, out=out)
    else:
        out[...] = get_array_module(out).einsum(subscripts, *operands)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks up to 32 MB for reuse instead of handing
    them back to the OS; True if it could (Linux with glibc), False elsewhere.

    A training step allocates and frees arrays of up to (B·T, V) = 16 MB. By default glibc
    serves such blocks with mmap and unmaps them on free, so the next step's array starts
    on fresh pages and pays a page fault per 4 KiB (measured: log_softmax on (2048, 2048)
    12.5 ms -> 8.7 ms, the training step ~5% faster). This sets M_MMAP_THRESHOLD to its
    32 MB maximum and M_TRIM_THRESHOLD to 512 MB, the settings ``MALLOC_MMAP_THRESHOLD_``
    and ``MALLOC_TRIM_THRESHOLD_`` give at startup. The cost: the process keeps up to
    512 MB of freed memory. `import minirl` calls it unless ``MINIRL_KEEP_FREED_MEMORY=0``.
    """
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 512 << 20))
    except (OSError, AttributeError):
        return False


def ignore_overflow():
    """A context in which float overflow to ±inf is expected and silent (NumPy's errstate;
    CuPy never warns)."""
    return np.errstate(over="ignore")


def num_threads() -> int:
    """Threads `parallel_rows` splits work across on the numpy backend.

    ``MINIRL_NUM_THREADS`` if set, else the CPUs this process may run on.
    """
    global _threads
    if _threads is None:
        value = os.environ.get("MINIRL_NUM_THREADS", "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise BackendError(f"MINIRL_NUM_THREADS must be a positive integer, got {value!r}.")
            _threads = int(value)
        else:
            _threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return _threads


def set_num_threads(n: int) -> None:
    """Use `n` threads in `parallel_rows` from now on (1 turns the splitting off)."""
    global _threads, _pool
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"number of threads must be a positive integer, got {n!r}.")
    _threads = int(n)
    if _pool is not None:
        _pool.shutdown()
        _pool = None


_BLAS_THREAD_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                        "openblas_set_num_threads64_", "openblas_set_num_threads")
_blas_setter: Any = None  # (set, get) of the OpenBLAS NumPy loaded, False where none was found


def _openblas_thread_calls():
    """``(set_num_threads, get_num_threads)`` of the OpenBLAS that NumPy loaded, found by its
    path in /proc/self/maps and opened with ctypes; None where there is none (another BLAS,
    or not Linux)."""
    global _blas_setter
    if _blas_setter is None:
        _blas_setter = False
        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
            import ctypes

            for path in sorted(paths):
                lib = ctypes.CDLL(path)
                for setter in _BLAS_THREAD_SETTERS:
                    getter = setter.replace("set_", "get_")
                    if hasattr(lib, setter) and hasattr(lib, getter):
                        _blas_setter = (getattr(lib, setter), getattr(lib, getter))
                        break
                if _blas_setter:
                    break
        except OSError:
            pass
    return _blas_setter or None


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Let NumPy's OpenBLAS use `n` threads inside the block, then restore its count.

    `parallel_rows` runs its blocks with one BLAS thread each: its threads already fill
    the cores, and a matmul inside a block (attention's per-head products, (T, hs) @ (hs, T))
    that split itself again would wake sleeping OpenBLAS workers for each small product.
    Measured on this 2-core VM at GPT-2's shape, causal attention on (4, 12, 256, 64):
    forward 467 ms with two BLAS threads per block, 41 ms with one. A no-op where NumPy's
    BLAS is not an OpenBLAS found in this process.
    """
    calls = _openblas_thread_calls()
    if calls is None:
        yield
        return
    set_threads, get_threads = calls
    previous = get_threads()
    set_threads(n)
    try:
        yield
    finally:
        set_threads(previous)


FEW_ROWS = 128
"""A matrix product whose left operand has fewer rows than this (a sampling step's batch)
runs on one BLAS thread; see `gemm`."""


def gemm(a, b):
    """``a @ b``; when `a` is a NumPy (N, k) matrix with N < `FEW_ROWS`, on one BLAS thread.

    Such a product (one new token per row while sampling: (B, C) @ (C, 4C)) is bound by
    reading the weight matrix, not by arithmetic, and splitting it costs a thread wake-up
    per call, which waits for a free core whenever another process holds one. Measured on
    this shared 2-core VM, (16, 768) @ (768, 3072): 1.8 ms on one thread, 16 ms on two;
    on an idle machine two threads could be up to ~2× faster instead. One or two threads
    give the same bits (the split is over output columns).
    """
    if a.ndim == 2 and a.shape[0] < FEW_ROWS and type(a) is np.ndarray:
        with blas_threads(1):
            return a @ b
    return a @ b


def parallel_rows(kernel: Callable, *arrays) -> None:
    """Run ``kernel(*blocks)`` on row blocks of `arrays`, the blocks in parallel threads.

    Every array is split at the same rows of its first axis, and the kernel writes its
    results into blocks of preallocated output arrays passed among them. NumPy runs a
    ufunc on one core and releases the GIL while it does, so a row-wise kernel (GELU,
    a softmax, a layer norm) on a (2048, 2048) array gets every core instead of one.
    Rows are computed independently and identically, so results are bit-for-bit the
    same for any thread count. Arrays smaller than `PARALLEL_MIN_SIZE` elements, and the cupy
    backend (already parallel on the GPU), call the kernel once on the whole arrays.
    """
    rows = arrays[0].shape[0]
    threads = min(num_threads(), rows) if arrays[0].size >= PARALLEL_MIN_SIZE else 1
    if threads <= 1 or get_array_module(arrays[0]) is not np or getattr(_in_parallel, "active", False):
        kernel(*arrays)  # small, on the GPU, or nested inside a block that already has its thread
        return
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=num_threads() - 1, thread_name_prefix="minirl")
    bounds = [rows * i // threads for i in range(threads + 1)]
    with blas_threads(1):  # the blocks fill the cores: a matmul inside one must not split again
        futures = [_pool.submit(_run_block, kernel, [a[lo:hi] for a in arrays])
                   for lo, hi in zip(bounds[1:-1], bounds[2:])]
        try:
            _run_block(kernel, [a[:bounds[1]] for a in arrays])  # the calling thread takes the first block
        finally:
            for future in futures:
                future.result()  # waits for every block; re-raises a worker's exception here


def _run_block(kernel: Callable, blocks: list) -> None:
    _in_parallel.active = True
    try:
        kernel(*blocks)
    finally:
        _in_parallel.active = False
