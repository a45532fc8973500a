"""minirl: RLHF from scratch in NumPy (with an optional CuPy backend).

Layers, each importing only from those below it (see README):
backend -> tensor/ops/functional -> nn, optim -> model, tokenizer -> data -> rl.
"""

from minirl import backend, functional, indexing, nn, ops, optim
from minirl.backend import manual_seed
from minirl.tensor import Tensor, no_grad

__all__ = ["Tensor", "no_grad", "manual_seed", "backend", "ops", "indexing", "functional", "nn", "optim"]
__version__ = "0.1.0"
