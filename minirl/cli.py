"""Command-line flags built from config dataclasses: one flag per field, its docstring as help.

No globals and no exec: ``add_dataclass_args(parser, TrainConfig, prefix="pretrain")`` adds
``--pretrain-steps`` and friends, and ``from_args(args, TrainConfig, prefix="pretrain")`` builds
the dataclass back, so a config's defaults live in exactly one place. A field that is itself a
dataclass (``RLConfig.ppo``) becomes a group of flags (``--rl-ppo-kl-coef``). A field whose
metadata has ``choices`` is checked by argparse, so ``--algo nope`` lists the valid values.
Every flag is spelled with dashes (``--rl-best-of-n-n`` for ``RLConfig.best_of_n.n``), and a
config's range check (`minirl.validation`) is restated with the flag the user typed.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import typing

from minirl.validation import ConfigError


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


def _dest(prefix: str, name: str) -> str:
    return f"{prefix.replace('-', '_')}__{name}" if prefix else name


def _flag(prefix: str, name: str) -> str:
    return "--" + (f"{prefix}-" if prefix else "") + name.replace("_", "-")


def _child_prefix(prefix: str, name: str) -> str:
    name = name.replace("_", "-")
    return f"{prefix}-{name}" if prefix else name


def _derived(defaults, f: dataclasses.Field, value) -> bool:
    """Whether `value`, the field's value in `defaults`, is what the config computes from its other fields
    when the field is None (its class default): GPTConfig.head_size = n_embd // n_head. Such a field's flag
    defaults to None, so that changing those other fields derives it anew rather than keeping a stale value."""
    if defaults is None or f.default is not None or value is None:
        return False
    try:
        return getattr(dataclasses.replace(defaults, **{f.name: None}), f.name) == value
    except (TypeError, ValueError):
        return False


def add_dataclass_args(parser: argparse.ArgumentParser, cls, prefix: str = "", *, defaults=None,
                       skip: tuple[str, ...] = (), title: str | None = None, description: str | None = None) -> None:
    """Add one flag per field of `cls` (recursing into dataclass fields), as one `--help` group.

    `defaults`, an instance of `cls`, replaces the class defaults (``--quick`` presets);
    fields named in `skip` (``"dpo.seed"`` for a nested one) get no flag and keep their default in `from_args`.
    `title` and `description` head the group; a nested dataclass's group takes its field's docstring.
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    title = title or (f"{_flag(prefix, '')[:-1]}-* flags" if prefix else f"{cls.__name__} flags")
    group = parser.add_argument_group(title, description)
    nested = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = getattr(defaults, f.name) if defaults is not None else \
            (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        if _derived(defaults, f, default):
            default = None  # derived again from the flags given (head_size from --model-n-embd / --model-n-head)
        if dataclasses.is_dataclass(hints[f.name]):
            inner_skip = tuple(name.split(".", 1)[1] for name in skip if name.startswith(f.name + "."))
            nested.append((hints[f.name], _child_prefix(prefix, f.name), default, inner_skip, docs.get(f.name)))
            continue
        group.add_argument(_flag(prefix, f.name), type=_parser_for(hints[f.name]), default=default,
                           dest=_dest(prefix, f.name), metavar=f.name.upper(), choices=f.metadata.get("choices"),
                           help=f"{docs.get(f.name, '')} (default: {default})".replace("%", "%%"))
    for inner, inner_prefix, default, inner_skip, doc in nested:  # after this group's own flags
        add_dataclass_args(parser, inner, inner_prefix, defaults=default, skip=inner_skip, description=doc)


def from_args(args: argparse.Namespace, cls, prefix: str = "", *, defaults=None):
    """Build `cls` back from the flags `add_dataclass_args` added (skipped fields keep `defaults`)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = from_args(args, hints[f.name], _child_prefix(prefix, f.name),
                                       defaults=getattr(defaults, f.name) if defaults is not None else None)
        elif hasattr(args, _dest(prefix, f.name)):
            values[f.name] = getattr(args, _dest(prefix, f.name))
        elif defaults is not None:
            values[f.name] = getattr(defaults, f.name)
    try:
        return cls(**values)
    except ConfigError as e:
        if not hasattr(args, _dest(prefix, e.field)):
            raise
        raise ValueError(f"{_flag(prefix, e.field)} {e.message}") from None
