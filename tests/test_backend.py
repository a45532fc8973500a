"""Backend selection, transfers, seeding, and the errors for a backend that can't be used."""

import subprocess
import sys
import types

import numpy as np
import pytest

from minirl import backend
from minirl.tensor import Tensor


def test_unknown_backend_names_the_choices():
    with pytest.raises(backend.BackendError, match=r"unknown backend 'jax'; choose one of 'numpy', 'cupy'"):
        backend.use("jax")
    assert backend.name() == "numpy"  # a failed switch leaves the old backend active


def test_cupy_not_installed_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(backend.BackendError,
                       match=r"cupy is not installed.*\[gpu-cuda13\].*cupy-cuda13x.*\[gpu-cuda12\].*cupy-cuda12x"):
        backend.use("cupy")
    assert not backend.cupy_available()


def test_cupy_without_gpu_says_which_case(monkeypatch):
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(backend.BackendError, match=r"cupy is installed, but no CUDA GPU is visible"):
        backend.use("cupy")


def test_env_var_selects_backend_and_reports_bad_names():
    code = "from minirl import backend; print(backend.name())"
    ok = subprocess.run([sys.executable, "-c", code], env={"MINIRL_BACKEND": "numpy", "PATH": ""},
                        capture_output=True, text=True)
    assert ok.stdout.strip() == "numpy"
    bad = subprocess.run([sys.executable, "-c", code], env={"MINIRL_BACKEND": "tpu", "PATH": ""},
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown backend 'tpu'" in bad.stderr


def test_transfers_and_array_module(backend_name):
    a = backend.to_backend(np.arange(6.0).reshape(2, 3))
    assert backend.get_array_module(a) is backend.xp()
    host = backend.to_numpy(a)
    assert isinstance(host, np.ndarray) and host.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert backend.to_backend(a, "numpy").dtype == np.float64
    assert backend.to_backend(host, dtype=np.float32).dtype == np.float32
    assert backend.get_array_module(1.0, [1, 2]) is np


def test_default_dtype_is_float32_and_switchable():
    assert backend.default_dtype() is np.float32
    assert Tensor([1.0]).dtype == np.float32
    with backend.dtype_context(np.float64):
        assert Tensor([1.0]).dtype == np.float64
    assert Tensor([1.0]).dtype == np.float32
    with pytest.raises(ValueError, match="float32 or float64"):
        backend.set_default_dtype(np.int32)


def test_seeded_generators_are_reproducible(backend_name):
    draw = lambda: backend.to_numpy(backend.rng(7).random(5))  # noqa: E731
    np.testing.assert_array_equal(draw(), draw())
    backend.manual_seed(3)
    first = backend.host_rng().random(4), backend.to_numpy(backend.device_rng().random(4))
    backend.manual_seed(3)
    second = backend.host_rng().random(4), backend.to_numpy(backend.device_rng().random(4))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])  # host and device streams are independent
    with pytest.raises(ValueError, match="non-negative integer"):
        backend.manual_seed(-1)


def test_rng_state_round_trip():
    backend.manual_seed(11)
    backend.host_rng().random(3)
    state = backend.rng_state()
    expected = backend.host_rng().random(3), backend.device_rng().random(3)
    backend.manual_seed(0)
    backend.set_rng_state(state)
    np.testing.assert_array_equal(backend.host_rng().random(3), expected[0])
    np.testing.assert_array_equal(backend.device_rng().random(3), expected[1])


def test_scatter_add_sums_repeated_indices(backend_name):
    target = backend.xp().zeros(4)
    backend.scatter_add(target, backend.to_backend(np.array([1, 1, 3])), backend.to_backend(np.array([1.0, 2.0, 5.0])))
    assert backend.to_numpy(target).tolist() == [0.0, 3.0, 0.0, 5.0]


def test_einsum_into_writes_through_a_strided_view(backend_name):
    a = backend.to_backend(np.arange(12.0).reshape(3, 4))
    column = backend.xp().full((3, 2), -1.0)
    backend.einsum_into("ij,ij->i", a, a, out=column[:, 1])  # a view with stride 2
    assert backend.to_numpy(column).tolist() == [[-1.0, 14.0], [-1.0, 126.0], [-1.0, 366.0]]


def test_reselecting_the_active_backend_keeps_the_random_stream():
    first = backend.device_rng().random(3)
    backend.use("numpy")
    with backend.using("numpy"):
        pass
    assert not np.array_equal(backend.device_rng().random(3), first)
