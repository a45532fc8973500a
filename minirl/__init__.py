"""minirl: RLHF from scratch in NumPy (with an optional CuPy backend).

Layers, each importing only from those below it (see README):
backend -> tensor/ops/functional -> nn, optim -> model, tokenizer -> data -> rl.
"""

import os as _os
import sys as _sys

if "numpy" not in _sys.modules:
    # OpenBLAS's workers spin for ~0.1 s after each matmul before they sleep, holding a
    # core that minirl's own row-parallel kernels (backend.parallel_rows) need. Ask them
    # to sleep at once. OpenBLAS reads this when numpy loads it, so it only works when
    # minirl is imported first; set it in the shell to be sure. An explicit value wins.
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from minirl import backend, functional, indexing, nn, ops, optim
from minirl.backend import manual_seed
from minirl.tensor import Tensor, no_grad

if _os.environ.get("MINIRL_KEEP_FREED_MEMORY", "1") != "0":
    backend.keep_freed_memory()  # reuse freed 16 MB arrays instead of page-faulting fresh ones

__all__ = ["Tensor", "no_grad", "manual_seed", "backend", "ops", "indexing", "functional", "nn", "optim"]
__version__ = "0.1.0"
