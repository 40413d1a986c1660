"""Reading catalog TOML files with errors that name the file and the line.

Every catalog loader goes through `read_toml` + `convert`:

- `read_toml(path)` parses the file; a syntax error becomes `ConfigError(path=, line=)` with the
  line tomllib reports.
- `convert(raw, Type, doc, prefix)` validates a parsed table against a `msgspec.Struct` schema
  (types, `Meta` bounds, missing and unknown keys). msgspec reports the offending key as a path
  (`$.model.num_layers`); `KeyLocator` maps that path back to the line that defines the key (or,
  for a missing key, the table header), so the error reads `file:line: model.num_layers: ...`.
- `TomlDoc.error(key_path, message)` raises the same kind of error for semantic checks.

The locator scans the text: `[table]` / `[[array.of.tables]]` headers and `key =` lines, skipping
multi-line strings. It handles the subset of TOML the catalog files use (no dotted keys inside
inline tables); when it cannot place a key it falls back to the nearest enclosing table.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from prfaas.core.errors import ConfigError

T = TypeVar("T")

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*(\"[^\"]+\"|[A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")
_LINE_RE = re.compile(r"at line (\d+)")
_MSGSPEC_PATH_RE = re.compile(r" - at `\$([^`]*)`$")


def _normalise(key: str) -> str:
    return ".".join(part.strip().strip('"') for part in key.split("."))


class KeyLocator:
    """Line numbers (1-based) of the keys and table headers in a TOML text."""

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        self._scan(text)

    def _scan(self, text: str) -> None:
        prefix = ""
        array_counts: dict[str, int] = {}
        in_multiline = False
        for lineno, line in enumerate(text.splitlines(), start=1):
            if in_multiline:
                in_multiline = line.count('"""') % 2 == 0
                continue
            header = _HEADER_RE.match(line)
            if header is not None:
                name = _normalise(header.group(2))
                if header.group(1) == "[[":
                    index = array_counts.get(name, 0)
                    array_counts[name] = index + 1
                    prefix = f"{name}[{index}]"
                else:
                    prefix = name
                self._lines.setdefault(prefix, lineno)
                continue
            key = _KEY_RE.match(line)
            if key is not None:
                path = f"{prefix}.{_normalise(key.group(1))}" if prefix else _normalise(key.group(1))
                self._lines.setdefault(path, lineno)
                in_multiline = line.count('"""') % 2 == 1

    def line_of(self, key_path: str) -> int | None:
        """Line of `key_path` (e.g. 'layout.rule[1].period'), else of its closest enclosing table."""
        path = key_path
        while path:
            if path in self._lines:
                return self._lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None


@dataclass(frozen=True, slots=True)
class TomlDoc:
    """A parsed TOML file: its path, its data and a locator for error lines."""

    path: str
    data: dict[str, Any]
    locator: KeyLocator = field(repr=False)

    def error(self, key_path: str, message: str) -> ConfigError:
        """A ConfigError for `key_path` (dotted, '' for the whole file) with the key's line."""
        where = f"{key_path}: " if key_path else ""
        line = self.locator.line_of(key_path) if key_path else None
        return ConfigError(f"{where}{message}", path=self.path, line=line)


def read_toml(path: Path | str) -> TomlDoc:
    """Parse one TOML file; unreadable files and syntax errors raise ConfigError naming file and line."""
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=str(file_path)) from None
    return parse_toml(text, str(file_path))


def parse_toml(text: str, path: str) -> TomlDoc:
    """Parse TOML text that came from `path` (used in messages)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _LINE_RE.search(message)
        line = int(match.group(1)) if match else None
        raise ConfigError(f"TOML syntax error: {message}", path=path, line=line) from None
    return TomlDoc(path=path, data=data, locator=KeyLocator(text))


def _lookup(data: Any, segments: list[str | int]) -> Any:
    for seg in segments:
        if isinstance(seg, int) and isinstance(data, list) and seg < len(data):
            data = data[seg]
            continue
        if isinstance(seg, str) and isinstance(data, dict) and seg in data:
            data = data[seg]
            continue
        return None
    return data


def _segments(msgspec_path: str) -> list[str | int]:
    """'.layout.rule[1].period' -> ['layout', 'rule', 1, 'period']."""
    segments: list[str | int] = []
    for token in re.findall(r"\.([^.\[]+)|\[(\d+)\]", msgspec_path):
        segments.append(token[0] if token[0] else int(token[1]))
    return segments


def _join(prefix: str, segments: list[str | int]) -> str:
    path = prefix
    for seg in segments:
        if isinstance(seg, int):
            path += f"[{seg}]"
        else:
            path = f"{path}.{seg}" if path else seg
    return path


def convert(raw: Any, schema: type[T], doc: TomlDoc, prefix: str = "") -> T:
    """Validate `raw` (the table at `prefix` in `doc`) against a msgspec schema; errors name the line."""
    try:
        return msgspec.convert(raw, schema, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _MSGSPEC_PATH_RE.search(message)
        segments = _segments(match.group(1)) if match else []
        reason = _MSGSPEC_PATH_RE.sub("", message)
        missing = re.search(r"missing required field `([^`]+)`", reason)
        unknown = re.search(r"unknown field `([^`]+)`", reason)
        if unknown is not None:
            segments = [*segments, unknown.group(1)]
            reason = "unknown key (check its spelling and the schema in catalog/README.md)"
        elif missing is not None:
            segments = [*segments, missing.group(1)]
            reason = "missing required key"
        else:
            value = _lookup(raw, segments)
            if value is not None and not isinstance(value, dict | list):
                reason = f"{reason} ({value!r})" if ", got " in reason else f"{reason}, got {value!r}"
        raise doc.error(_join(prefix, segments), reason) from None
