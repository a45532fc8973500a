"""Learn XOR with a two-layer MLP built on minirl's autograd engine.

    python examples/xor_mlp.py [STEPS]

XOR is the classic function a linear model cannot fit: the hidden GELU layer is
what makes it learnable. Every gradient here comes from the closures in
minirl/ops.py and minirl/functional.py.
"""

import argparse

import numpy as np

import minirl
from minirl import functional as F
from minirl import nn, optim


class MLP(nn.Module):
    def __init__(self, hidden: int = 16):
        self.fc1 = nn.Linear(2, hidden)
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # (4, 2) -> (4, hidden) -> (4, 2) logits


def main(steps: int = 300) -> float:
    minirl.manual_seed(0)
    x = minirl.Tensor(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32))
    y = np.array([0, 1, 1, 0])
    model = MLP()
    opt = optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    for step in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}")
    with minirl.no_grad():
        probs = F.softmax(model(x)).numpy()[:, 1]
    for (a, b), p in zip(x.numpy().astype(int), probs):
        print(f"{a} xor {b} -> p(1) = {p:.3f}")
    return loss.item()


def parse_args(argv=None) -> argparse.Namespace:
    """The command line: an optional count of optimizer steps, at least 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("steps", nargs="?", type=int, default=300, help="optimizer steps (default: 300)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"steps must be at least 1, got {args.steps}")
    return args


if __name__ == "__main__":
    main(parse_args().steps)
