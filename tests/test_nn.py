"""Modules: parameter discovery, state dicts and their errors, modes, and the layers."""

import numpy as np
import pytest

from minirl import backend, nn
from minirl.tensor import Tensor


class Block(nn.Module):
    def __init__(self):
        self.ln_1 = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 8)
        self.drop = nn.Dropout(0.5)


class Net(nn.Module):
    def __init__(self):
        self.wte = nn.Embedding(10, 4)
        self.h = [Block(), Block()]
        self.head = nn.Linear(8, 2, bias=False)


def test_named_parameters_are_dotted_stable_and_unique():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["wte.weight", "h.0.ln_1.weight", "h.0.ln_1.bias", "h.0.fc.weight", "h.0.fc.bias",
                     "h.1.ln_1.weight", "h.1.ln_1.bias", "h.1.fc.weight", "h.1.fc.bias", "head.weight"]
    assert net.num_parameters() == 40 + 2 * (4 + 4 + 32 + 8) + 16
    net.head.weight = net.h[0].fc.weight  # weight tying: one parameter, listed once
    assert len(net.parameters()) == 9


def test_state_dict_round_trip_copies_data(backend_name):
    backend.manual_seed(1)
    a = Net()
    backend.manual_seed(2)
    b = Net()
    state = a.state_dict()
    b.load_state_dict(state)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy(), err_msg=name)
    b.wte.weight.data += 1  # neither the source model nor the dict may change
    np.testing.assert_array_equal(backend.to_numpy(state["wte.weight"]), a.wte.weight.numpy())


def test_load_state_dict_lists_every_problem_and_changes_nothing():
    net = Net()
    before = net.state_dict()
    bad = dict(before)
    del bad["head.weight"]
    bad["h.0.fc.weight"] = np.zeros((3, 3))
    bad["lm_head.weight"] = np.zeros(2)
    with pytest.raises(ValueError) as err:
        net.load_state_dict(bad)
    msg = str(err.value)
    assert "missing keys: head.weight" in msg
    assert "unexpected keys: lm_head.weight" in msg
    assert "h.0.fc.weight: checkpoint (3, 3) vs model (4, 8)" in msg
    for name, p in net.named_parameters():
        np.testing.assert_array_equal(p.data, before[name])
    del bad["lm_head.weight"]
    bad["h.0.fc.weight"] = before["h.0.fc.weight"]
    net.load_state_dict(bad, strict=False)  # non-strict tolerates the missing key


def test_train_eval_reaches_every_submodule():
    net = Net()
    net.eval()
    assert not net.h[1].drop.training
    x = Tensor(np.ones((3, 4)))
    assert net.h[0].drop(x) is x
    net.train()
    assert net.h[1].drop.training
    assert not np.array_equal(net.h[1].drop(x).numpy(), x.numpy())


def test_linear_and_layernorm_forward(backend_name):
    lin = nn.Linear(3, 2)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(lin(Tensor(x)).numpy(), x @ lin.weight.numpy() + lin.bias.numpy(), rtol=1e-5)
    assert np.all(np.abs(lin.weight.numpy()) <= 1 / np.sqrt(3))
    ln = nn.LayerNorm(3)
    np.testing.assert_array_equal(ln.weight.numpy(), [1, 1, 1])  # GPT-2's init: the identity affine map
    np.testing.assert_array_equal(ln.bias.numpy(), [0, 0, 0])
    y = ln(Tensor(x)).numpy()
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(-1), x.var(-1) / (x.var(-1) + 1e-5), rtol=1e-4)  # ≈ 1: normalised, not scaled
    assert nn.LayerNorm(3, bias=False).bias is None


def test_init_is_seeded_and_backend_independent(backend_name):
    backend.manual_seed(5)
    first = nn.Linear(4, 4).weight.numpy()
    backend.manual_seed(5)
    with backend.using("numpy"):
        second = nn.Linear(4, 4).weight.numpy()
    np.testing.assert_array_equal(first, second)


def test_flat_parameter_vector_round_trip():
    net = Net()
    params = net.parameters()
    vec = nn.parameters_to_vector(params)
    assert vec.shape == (net.num_parameters(),)
    nn.vector_to_parameters(vec * 0 + 1, params)
    assert all(np.all(p.data == 1) for p in params)
    with pytest.raises(ValueError, match="parameters hold 40"):
        nn.vector_to_parameters(np.zeros(3), [net.wte.weight])


def test_parameter_owns_its_buffer():
    source = np.zeros(3, dtype=np.float32)
    p = nn.Parameter(source)
    p.data += 1
    assert source.tolist() == [0.0, 0.0, 0.0]
