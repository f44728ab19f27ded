"""Help pages the click way: ``--mode TEXT``, flags without a type, arguments by name only, and
paragraphs reflowed (docstrings are Markdown)."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

_LABELS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "bool": "BOOLEAN"}


def _tidy(param: Any, ctx: Any) -> None:
    if isinstance(param, TyperArgument):
        param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]  # the name says it
    elif getattr(param, "is_flag", False):
        param.metavar = ""  # a flag takes no value
    elif param.metavar is None and hasattr(param, "display_type"):  # typer >= 0.20 labels: <str>
        label = str(param.display_type(ctx)).strip("<>").removeprefix("list[").removesuffix("]")
        param.metavar = _LABELS.get(label, label.upper())


class Command(TyperCommand):
    """A command whose help shows click-style value names."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for p in params:
            _tidy(p, ctx)
        return params


class Group(TyperGroup):
    """A group whose help (and its commands' help) shows click-style value names."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for p in params:
            _tidy(p, ctx)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None and type(cmd) is TyperCommand:
            cmd.__class__ = Command
        elif cmd is not None and type(cmd) is TyperGroup:
            cmd.__class__ = Group
        return cmd


def new_app(**options: Any) -> typer.Typer:
    """A Typer app with riverbed's help conventions."""
    return typer.Typer(
        cls=Group,
        rich_markup_mode="markdown",
        add_completion=False,
        pretty_exceptions_enable=False,
        **options,
    )
