"""Where the files source's files are: formats from extensions, local paths and fsspec URLs,
listing a file, glob or directory."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

from riverbed._errors import ConfigError, SourceError

Format = Literal["parquet", "csv", "jsonl"]
_EXT: dict[str, Format] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def format_of(path: str, explicit: str | None = None) -> Format:
    """The file format from an explicit name or the extension."""
    if explicit is not None:
        if explicit not in ("parquet", "csv", "jsonl"):
            raise ConfigError(f"unknown format {explicit!r}; use 'parquet', 'csv' or 'jsonl'")
        return explicit  # type: ignore[return-value]
    suffix = Path(path.rstrip("/").split("?")[0]).suffix.lower()
    if suffix in (".gz", ".zst"):
        suffix = Path(path[: -len(suffix)]).suffix.lower()
    if suffix in _EXT:
        return _EXT[suffix]
    raise ConfigError(
        f"cannot tell the format of {path!r} from its extension.\n"
        "  hint: use .parquet, .csv, .jsonl (or .ndjson/.json), or pass format='csv'"
    )


def is_remote(path: str) -> bool:
    """True for fsspec URLs other than plain local paths."""
    return "://" in path and not path.startswith("file://")


def _fs(path: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    except ImportError as exc:
        proto = path.split("://", 1)[0]
        hint = (
            'pip install "riverbed[s3]"'
            if proto in ("s3", "s3a")
            else f"install the fsspec driver for {proto}://"
        )
        raise ConfigError(f"cannot open {path!r}: {exc}\n  hint: {hint}") from None
    except (OSError, ValueError, TimeoutError) as exc:  # fsspec drivers that connect at once (ftp, sftp)
        raise SourceError(
            f"cannot open {path!r}: {type(exc).__name__}: {exc}\n"
            "  hint: is the server up and reachable? check the URL and storage_options"
        ) from None
    return fs, root


def list_files(path: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Expand a file, glob or directory into a sorted list of files (URLs kept for remote)."""
    fs, root = _fs(path, storage_options)
    proto = path.split("://", 1)[0] + "://" if is_remote(path) else ""
    try:
        if fs.exists(root) and not fs.isdir(root):
            found = [root]  # a file, even if its name has glob characters
        elif any(ch in root for ch in "*?["):
            # like a directory listing, skip hidden and marker files (.tmp parts, _SUCCESS),
            # unless the pattern itself asks for them
            hidden_ok = root.rstrip("/").rsplit("/", 1)[-1].startswith((".", "_"))
            found = sorted(p for p in fs.glob(root) if hidden_ok or not Path(p).name.startswith((".", "_")))
        elif fs.isdir(root):
            found = sorted(
                p
                for p in fs.find(root)
                if not Path(p).name.startswith((".", "_")) and Path(p).suffix.lower() in _EXT
            )
        elif fs.exists(root):
            found = [root]
        else:
            found = []
    except Exception as exc:  # fsspec drivers raise their own types
        hint = ""
        if "Credentials" in type(exc).__name__ or "credentials" in str(exc).lower():
            hint = (
                "\n  hint: give credentials (e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or "
                "storage_options={'key': ..., 'secret': ...})"
            )
        raise SourceError(f"cannot list {path!r}: {type(exc).__name__}: {exc}{hint}") from None
    files = [p for p in found if not fs.isdir(p)]
    if not files:
        parent = root.rstrip("/")
        while parent and (any(ch in parent for ch in "*?[") or not fs.exists(parent)):
            parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
        parent = parent or "."
        try:
            there = sorted(Path(p).name for p in fs.ls(parent, detail=False))[:20]
        except OSError:
            there = []
        raise SourceError(
            f"no files match {path!r}.\n  {proto}{parent} holds: {', '.join(there) if there else '(nothing)'}"
        )
    if proto and not files[0].startswith(proto):
        files = [proto + f for f in files]
    return files


class LocalDirLister:
    """Lists a local directory as :func:`list_files` does (files with a known extension, not
    hidden, recursively, sorted), but walks it again only when one of its directories changed:
    a watched directory of many files costs a few ``stat`` calls per look, not a listing."""

    GRANULARITY_S = 2.0
    """A directory changed this close to the last listing is listed again (coarse mtimes)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.mtimes: dict[str, int] = {}
        self.listed_at = 0.0
        self.files: list[str] = []

    def _unchanged(self) -> bool:
        if not self.mtimes:
            return False
        for d, m in self.mtimes.items():
            try:
                now = os.stat(d).st_mtime_ns
            except OSError:
                return False
            if now != m or self.listed_at - m / 1e9 < self.GRANULARITY_S:
                return False
        return True

    def __call__(self) -> list[str]:
        if self._unchanged():
            return self.files
        listed_at = time.time()
        mtimes: dict[str, int] = {}
        found = []
        for d, _, names in os.walk(self.root):
            try:
                mtimes[d] = os.stat(d).st_mtime_ns
            except OSError:
                continue
            for n in names:
                if not n.startswith((".", "_")) and os.path.splitext(n)[1].lower() in _EXT:
                    found.append(os.path.join(d, n))
        self.files, self.mtimes, self.listed_at = sorted(found), mtimes, listed_at
        return self.files
