"""Write `cupy_api.json`: the names, array methods and keyword arguments of the installed CuPy.

The CuPy stand-in (`tests/cupy_standin`) refuses any function, method or keyword that is
not listed here, so a call that real CuPy would reject fails on a CPU too. CuPy's wheel
imports without a GPU, so this runs on any machine:

    pip install cupy-cuda12x && python tests/cupy_standin/make_manifest.py

Signatures come from `inspect.signature` where CuPy's functions are plain Python, and
otherwise from the first docstring line that Cython writes (``name(self, axis=None, ...)``).
Each entry is a list of parameter names, with "*" when the callable takes ``*args`` and
"**" when it takes ``**kwargs`` (then any keyword passes); an attribute that is not
callable maps to null. Ufuncs share one entry, the keywords of ``ufunc.__call__``.
"""

from __future__ import annotations

import inspect
import json
import pathlib
import re

import cupy
import cupyx

_DOC_SIGNATURE = re.compile(r"^[\w.]*?(\w+)\((.*?)\)")


def _parameters_from_doc(obj) -> list[str] | None:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    match = _DOC_SIGNATURE.match(doc)
    if not match:
        return None
    names = []
    for part in match.group(2).split(","):
        part = part.strip().split("=")[0].split(":")[0].strip()
        if not part or part == "self" or part == "/":
            continue
        if part.startswith("**"):
            names.append("**")
        elif part.startswith("*"):
            names.append("*")
        else:
            names.append(part.split()[-1])  # Cython writes "int axis"
    return names


def _parameters(obj) -> list[str] | None:
    """Parameter names of a callable, or None for an attribute that is not callable."""
    if not callable(obj):
        return None
    names = None
    try:
        sig = inspect.signature(obj)
        names = []
        for p in sig.parameters.values():
            if p.name == "self":
                continue
            names.append({p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, p.name))
    except (TypeError, ValueError):
        pass
    if names is None or "**" in names:  # a Cython builtin, or a **kwargs the docstring spells out
        from_doc = _parameters_from_doc(obj)
        names = from_doc if from_doc is not None else names or ["*", "**"]
    return names


def _namespace(module, skip=()) -> dict:
    out = {}
    for name in sorted(dir(module)):
        if name.startswith("_") or name in skip:
            continue
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue
        out[name] = "ufunc" if isinstance(obj, cupy.ufunc) else _parameters(obj)
    return out


def _class(cls) -> dict:
    out = {}
    for name in sorted(dir(cls)):
        if name.startswith("_") and name not in ("__array__", "__array_function__", "__array_ufunc__"):
            continue
        out[name] = _parameters(getattr(cls, name))
    return out


def manifest() -> dict:
    # ufunc.__call__(self, *args, **kwargs) documents its keywords as "    out (...): ..." lines
    documented = re.findall(r"^ {4}(\w+)(?: \(.*?\))?:", cupy.ufunc.__call__.__doc__ or "", re.M)
    ufunc_keywords = sorted(set(documented) - {"args"})
    return {
        "cupy_version": cupy.__version__,
        "regenerate": "pip install cupy-cuda12x && python tests/cupy_standin/make_manifest.py",
        "cupy": _namespace(cupy),
        "cupy.linalg": _namespace(cupy.linalg),
        "cupy.random": _namespace(cupy.random),
        "cupy.random.Generator": _class(cupy.random.Generator),
        "cupy.ndarray": _class(cupy.ndarray),
        "cupyx": _namespace(cupyx),
        "ufunc_keywords": ufunc_keywords,
        "ufunc_methods": [n for n in dir(cupy.ufunc) if not n.startswith("_")],
    }


if __name__ == "__main__":
    path = pathlib.Path(__file__).with_name("cupy_api.json")
    path.write_text(json.dumps(manifest(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {path} (cupy {cupy.__version__})")
