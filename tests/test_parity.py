"""NumPy and CuPy agree on every op's forward and backward, in float32. Needs a GPU."""

import numpy as np
import pytest

from minirl import backend
from minirl.gradcheck import CASES, draw_inputs
from minirl.tensor import Tensor

pytestmark = pytest.mark.skipif(not backend.cupy_available(),
                                reason="parity needs the cupy backend: cupy is not installed or no CUDA GPU is visible")


def forward_backward(case, name):
    with backend.using(name):
        tensors = [Tensor(x.astype(np.float32), requires_grad=True) for x in draw_inputs(case)]
        out = case.fn(*tensors)
        cotangent = np.random.default_rng(0).standard_normal(out.shape).astype(np.float32)
        out.backward(backend.to_backend(cotangent))
        return out.numpy(), [t.numpy() * 0 if t.grad is None else backend.to_numpy(t.grad) for t in tensors]


@pytest.mark.parametrize("case", [c for c in CASES if c.op != "dropout"], ids=lambda c: c.op)
def test_numpy_and_cupy_agree(case):
    out_np, grads_np = forward_backward(case, "numpy")
    out_cp, grads_cp = forward_backward(case, "cupy")
    np.testing.assert_allclose(out_cp, out_np, rtol=1e-4, atol=1e-5)
    for g_cp, g_np in zip(grads_cp, grads_np):
        np.testing.assert_allclose(g_cp, g_np, rtol=1e-4, atol=1e-5)
