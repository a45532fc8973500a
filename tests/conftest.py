"""Shared fixtures: the backend each array test runs on, and hypothesis settings."""

import importlib.metadata
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minirl import backend
from tests import cupy_standin

# Derandomized, so CI is deterministic; a fixed example budget keeps the suite fast.
settings.register_profile(
    "minirl",
    max_examples=int(os.environ.get("MINIRL_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("minirl")

_CUPY_REASON = "cupy backend unavailable: cupy is not installed or no CUDA GPU is visible"
BACKEND_PARAMS = [
    "numpy",
    "standin",  # the cupy code path on the CPU, through the strict stand-in (tests/cupy_standin)
    pytest.param("cupy", marks=pytest.mark.skipif(not backend.cupy_available(), reason=_CUPY_REASON)),
]


def has_distribution(name: str) -> bool:
    """Whether a PyPI distribution (e.g. a data package) is installed, without importing it."""
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(autouse=True)
def _fresh_state():
    """Every test starts on numpy, seed 0, float32, whatever the last test did."""
    backend.use("numpy")
    backend.manual_seed(0)
    backend.set_default_dtype(np.float32)
    yield
    backend.use("numpy")
    backend.set_default_dtype(np.float32)


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request):
    """Run the test once per backend: numpy, the CuPy stand-in, and real cupy (skipped with a
    reason when no GPU is present). Under the stand-in the active backend is "cupy"."""
    if request.param == "standin":
        backend.install_cupy(cupy_standin, cupy_standin.cupyx)
        cupy_standin.counts.reset()
    backend.use("cupy" if request.param == "standin" else request.param)
    yield backend.name()
    backend.use("numpy")
    if request.param == "standin":
        backend.install_cupy(None, None)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished happy_gpt folder, made once per session in ~25 s: a tiny model on the synthetic
    corpus, PPO (so it has a value model) against a learned reward model (so the explorer has all panels)."""
    from minirl.examples import happy_gpt

    out = tmp_path_factory.mktemp("explore") / "run"
    argv = ["--quick", "--corpus", "synthetic", "--vocab-size", "300", "--pretrain-steps", "40", "--sft-steps", "10",
            "--rl-iterations", "3", "--eval-samples", "8", "--reward", "rm", "--rm-pairs", "60", "--rm-steps", "5",
            "--out", str(out)]
    assert happy_gpt.main(argv) == 0
    backend.use("numpy")
    backend.set_default_dtype(np.float32)
    return out
