"""Load a pipeline from a Python file: a Pipeline object, or a function returning one."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riverbed._errors import ConfigError, PlanError
from riverbed.pipeline import Pipeline

_FACTORY_NAMES = ("pipeline", "build", "make_pipeline", "create_pipeline")


class PipelineFileError(ConfigError):
    """The pipeline file could not be loaded: a syntax error, an exception or ``sys.exit`` while
    it was imported, or an exception in its factory function."""


def _user_frames(exc: BaseException, path: Path) -> str:
    """The traceback lines of ``exc`` that are in the user's own files (not riverbed's, not
    libraries'), most recent call last."""
    here = Path(__file__).resolve().parents[1]  # the riverbed package
    keep = []
    for frame in traceback.extract_tb(exc.__traceback__):
        file = Path(frame.filename)
        if frame.filename.startswith("<") or here in file.resolve().parents:
            continue
        if "site-packages" in file.parts and file.resolve() != path.resolve():
            continue
        keep.append(frame)
    if not keep:
        return ""
    lines = "".join(traceback.format_list(keep[-5:])).rstrip()
    return "\n  traceback (your code, most recent call last):\n" + "\n".join(
        "  " + line for line in lines.splitlines()
    )


def _load_error(exc: BaseException, path: Path, when: str) -> PipelineFileError:
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename or path}, line {exc.lineno}"
        code = (exc.text or "").rstrip("\n")
        caret = ""
        if code and exc.offset:
            indent = len(code) - len(code.lstrip())
            code = code.strip()
            caret = "\n    " + " " * max(exc.offset - 1 - indent, 0) + "^"
        shown = f"\n    {code}{caret}" if code else ""
        return PipelineFileError(f"{where}: syntax error: {exc.msg}{shown}")
    if isinstance(exc, SystemExit):
        frames = _user_frames(exc, path)
        return PipelineFileError(f"{path} called sys.exit({exc.code!r}) {when}{frames}")
    frames = _user_frames(exc, path)
    return PipelineFileError(f"{path}: {type(exc).__name__}: {exc} ({when}){frames}")


def parse_params(items: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"-p expects NAME=VALUE, got {item!r}")
        out[name.strip()] = value
    return out


def _convert(value: str, annotation: Any) -> Any:
    kind = annotation if isinstance(annotation, type) else None
    if isinstance(annotation, str):
        kind = {"int": int, "float": float, "bool": bool}.get(annotation)
    if kind is bool:
        return value.lower() in ("1", "true", "yes", "on")
    if kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            raise ConfigError(f"expected {kind.__name__}, got {value!r}") from None
    return value


def _call(fn: Callable[..., Any], params: dict[str, str], where: str) -> Pipeline:
    sig = inspect.signature(fn)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    kwargs: dict[str, Any] = {}
    for name, value in params.items():
        if name in sig.parameters:
            kwargs[name] = _convert(value, sig.parameters[name].annotation)
        elif accepts_any:
            kwargs[name] = value
        else:
            accepted = [
                p.name for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
            raise ConfigError(
                f"{where} takes no parameter {name!r}; it takes: {', '.join(accepted) or '(none)'}"
            )
    missing = [
        p.name
        for p in sig.parameters.values()
        if p.default is p.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in kwargs
    ]
    if missing:
        raise ConfigError(f"{where} needs -p {'=... -p '.join(missing)}=...")
    try:
        out = fn(**kwargs)
    except (ConfigError, PlanError):
        raise
    except Exception as exc:
        raise _load_error(exc, Path(inspect.getfile(fn)), f"in {where}()") from None
    except SystemExit as exc:
        raise _load_error(exc, Path(inspect.getfile(fn)), f"in {where}()") from None
    if not isinstance(out, Pipeline):
        raise PlanError(f"{where} must return a riverbed.Pipeline, got {type(out).__name__}")
    return out


def load_pipeline(spec: str, params: dict[str, str]) -> Pipeline:
    """Load ``FILE`` or ``FILE:NAME`` and return its pipeline, passing ``params`` to a factory."""
    path_text, _, attr = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    path = Path(path_text)
    if not path.exists():
        raise ConfigError(f"pipeline file {path_text!r} does not exist")
    mod_name = f"_riverbed_user_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"cannot import {path}: is it a Python file?")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        module_spec.loader.exec_module(module)
    except (ConfigError, PlanError):
        raise
    except (Exception, SystemExit) as exc:
        raise _load_error(exc, path, "while loading it") from None
    finally:
        sys.path.pop(0)
    if attr:
        if not hasattr(module, attr):
            raise ConfigError(f"{path} has no attribute {attr!r}")
        candidates = [(attr, getattr(module, attr))]
    else:
        candidates = [(n, getattr(module, n)) for n in _FACTORY_NAMES if hasattr(module, n)]
        objects = [(n, v) for n, v in vars(module).items() if isinstance(v, Pipeline)]
        if not candidates and len(objects) > 1:
            names = ", ".join(n for n, _ in objects)
            raise ConfigError(
                f"{path} defines several pipelines ({names}); say which to run.\n"
                f"  hint: riverbed run {path}:{objects[0][0]}"
            )
        candidates += [(n, v) for n, v in objects if (n, v) not in candidates]
    for name, obj in candidates:
        where = f"{path}:{name}"
        if isinstance(obj, Pipeline):
            if params:
                raise ConfigError(
                    f"{where} is a pipeline object; -p values need a function "
                    "that takes them and returns the pipeline"
                )
            return obj
        if callable(obj) and not isinstance(obj, type):
            return _call(obj, params, where)
    raise ConfigError(
        f"{path} exposes no pipeline.\n  hint: define a riverbed.Pipeline at module level, or a "
        f"function named {' / '.join(_FACTORY_NAMES)} that returns one (or use FILE:NAME)"
    )
