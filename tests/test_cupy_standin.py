"""The CuPy stand-in refuses what real CuPy refuses, returns what it returns, and counts syncs."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from minirl import backend
from tests import cupy_standin as cp


@pytest.fixture
def xp():
    backend.install_cupy(cp, cp.cupyx)
    backend.use("cupy")
    cp.counts.reset()
    yield backend.xp()
    backend.use("numpy")
    backend.install_cupy(None, None)


def test_its_arrays_pass_for_cupy_arrays(xp):
    a = xp.arange(3.0)
    assert xp is cp and type(a).__module__ == "cupy"
    assert backend.get_array_module(a) is cp and backend.get_array_module(np.ones(2)) is np
    assert backend.to_numpy(a).tolist() == [0.0, 1.0, 2.0]


def test_implicit_conversion_to_numpy_is_refused(xp):
    a = xp.ones(3)
    for convert in (np.asarray, lambda a: np.testing.assert_allclose(a, 1.0), lambda a: a == pytest.approx(1.0)):
        with pytest.raises(TypeError, match="Implicit conversion"):
            convert(a)


def test_numpy_operands_are_refused(xp):
    a, host = xp.ones(3), np.ones(3)
    for op in (lambda: a + host, lambda: host * a, lambda: xp.maximum(a, host), lambda: xp.concatenate([a, host]),
               lambda: a + [1.0, 2.0, 3.0], lambda: a.__setitem__(slice(None), host)):
        with pytest.raises(TypeError, match="Unsupported type"):
            op()
    assert float((a + np.float32(2.0)).sum()) == 9.0  # NumPy scalars are fine, as in CuPy
    assert backend.to_numpy(xp.asarray(host)).tolist() == [1.0, 1.0, 1.0]  # asarray is the way in


def test_names_and_keywords_real_cupy_lacks_are_refused(xp):
    a = xp.ones((2, 3))
    with pytest.raises(TypeError, match="unexpected keyword argument 'out'"):
        xp.einsum("ij->i", a, out=xp.empty(2))  # NumPy's einsum has `out`, CuPy's has not
    with pytest.raises(TypeError, match="unexpected keyword argument 'where'"):
        a.sum(where=a > 0)
    with pytest.raises(AttributeError, match="has no attribute 'insert'"):
        xp.insert  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'resize'"):
        a.resize  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'put'"):
        xp.random.default_rng(0).put  # noqa: B018


def test_where_needs_an_array_condition(xp):
    with pytest.raises(AttributeError, match="astype"):
        xp.where(True, xp.ones(2), xp.zeros(2))
    with pytest.raises(AttributeError, match="astype"):
        xp.where([True, False], xp.ones(2), xp.zeros(2))
    assert xp.where(xp.asarray([True, False]), 1.0, 0.0).tolist() == [1.0, 0.0]


def test_reductions_and_integer_indexing_give_0d_arrays(xp):
    a = xp.arange(6.0).reshape(2, 3)
    for value in (a.sum(), a.max(), xp.sum(a), a[1, 2], np.mean(a)):
        assert isinstance(value, cp.ndarray) and value.shape == ()


def test_out_of_range_integer_indices_raise(xp):
    a = xp.zeros((2, 3))
    ids = xp.asarray([0, 3])
    for bad in (lambda: a[:, ids], lambda: xp.take_along_axis(a, xp.asarray([[3], [0]]), axis=1),
                lambda: cp.cupyx.scatter_add(a, (xp.asarray([2]),), 1.0)):
        with pytest.raises((cp.IndexWouldWrap, IndexError)):
            bad()
    assert a[:, xp.asarray([-1])].shape == (2, 1)  # negative ids inside the axis are fine


def test_it_counts_host_syncs(xp):
    a = xp.arange(4.0)
    cp.counts.reset()
    b = (a * 2.0).sum()
    assert cp.counts.syncs == 0 and cp.counts.ops == 2
    float(b), int(b), bool(b), b.item(), a.tolist(), a.get(), a[a > 1.0]
    assert cp.counts.syncs == 7
    assert set(cp.counts.sync_kinds) == {"float", "int", "bool", "item", "tolist", "get", "boolean mask"}


def test_uninstalling_restores_the_real_import(xp):
    backend.use("numpy")
    backend.install_cupy(None, None)
    if not backend.cupy_available():
        with pytest.raises(backend.BackendError, match="cupy"):
            backend.use("cupy")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="cupy is not installed: the manifest cannot "
                    "be compared with it (regenerate with tests/cupy_standin/make_manifest.py where it is)")
def test_manifest_matches_the_installed_cupy():
    spec = importlib.util.spec_from_file_location("make_manifest", pathlib.Path(cp.__file__).with_name("make_manifest.py"))
    make_manifest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_manifest)
    fresh = json.loads(json.dumps(make_manifest.manifest()))
    if fresh["cupy_version"] != cp.API["cupy_version"]:
        pytest.skip(f"installed cupy {fresh['cupy_version']} is not the manifest's {cp.API['cupy_version']}")
    assert fresh == cp.API
