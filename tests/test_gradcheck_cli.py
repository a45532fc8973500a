"""`python -m minirl.gradcheck`: covers every op, prints a table, and fails when a backward is wrong."""

import subprocess
import sys

from minirl import functional, indexing, ops
from minirl import gradcheck
from minirl.tensor import Tensor


def test_registry_covers_every_public_op():
    checked = {case.op for case in gradcheck.CASES}
    missing = (set(ops.__all__) | set(indexing.__all__) | set(functional.__all__)) - checked
    assert not missing, f"ops without a gradient check: {sorted(missing)}"


def test_cli_prints_table_and_passes(capsys):
    assert gradcheck.main([]) == 0
    out = capsys.readouterr().out
    assert "max abs err" in out and "layer_norm" in out and "FAIL" not in out


def test_cli_exits_nonzero_on_a_wrong_backward(monkeypatch, capsys):
    def bad_square(x):  # forward x², backward claims 3x
        return Tensor._make(x.data ** 2, (x,), lambda g: (3 * x.data * g,))
    monkeypatch.setattr(gradcheck, "CASES", [gradcheck.Case("bad_square", bad_square, ((3,),))])
    assert gradcheck.main([]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_cli_runs_as_a_module_and_filters():
    done = subprocess.run([sys.executable, "-m", "minirl.gradcheck", "--op", "softmax"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "log_softmax" in done.stdout and "gelu" not in done.stdout
    none = subprocess.run([sys.executable, "-m", "minirl.gradcheck", "--op", "nope"], capture_output=True, text=True)
    assert none.returncode == 2 and "no op matches 'nope'" in none.stderr
