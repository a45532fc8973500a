"""Command-line flags built from config dataclasses: one flag per field, its docstring as help.

No globals and no exec: ``add_dataclass_args(parser, TrainConfig, prefix="pretrain")`` adds
``--pretrain-steps`` and friends, and ``from_args(args, TrainConfig, prefix="pretrain")`` builds
the dataclass back, so a config's defaults live in exactly one place.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import typing


def field_docs(cls) -> dict[str, str]:
    """The string literal under each field (the docstring convention of our configs)."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant) \
                and isinstance(following.value.value, str):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _parser_for(tp):
    """An argparse `type=` for a field annotation; Optional[X] accepts 'none'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or (origin is not None and type(None) in args):
        inner = next(a for a in args if a is not type(None))
        base = _parser_for(inner)
        return lambda s: None if s.lower() == "none" else base(s)
    if tp is bool:
        def parse_bool(s: str) -> bool:
            if s.lower() in ("1", "true", "yes", "on"):
                return True
            if s.lower() in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")
        return parse_bool
    return tp if tp in (int, float, str) else str


def add_dataclass_args(parser: argparse.ArgumentParser, cls, prefix: str = "") -> None:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    group = parser.add_argument_group(f"{prefix or cls.__name__} options")
    for f in dataclasses.fields(cls):
        flag = "--" + (f"{prefix}-" if prefix else "") + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        group.add_argument(flag, type=_parser_for(hints[f.name]), default=default,
                           dest=f"{prefix}__{f.name}" if prefix else f.name, metavar=f.name.upper(),
                           help=f"{docs.get(f.name, '')} (default: {default})")


def from_args(args: argparse.Namespace, cls, prefix: str = ""):
    values = {f.name: getattr(args, f"{prefix}__{f.name}" if prefix else f.name) for f in dataclasses.fields(cls)}
    return cls(**values)
