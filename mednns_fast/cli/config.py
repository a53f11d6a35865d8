"""Configuration of the `mednns-fast` command: built-in defaults, then a TOML file, then `--set key=value`
overrides, resolved into one nested dict that the run directory records."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ConfigError", "load_config", "merge", "parse_override"]


class ConfigError(ValueError):
    """A config file or override that cannot be used (the message says which and why)."""


def merge(base: Mapping[str, Any], update: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """`base` updated by `update`, recursively; keys unknown to `base` are refused (catches typos)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        name = f"{where}{key}"
        if key not in out:
            known = ", ".join(sorted(out)) or "none"
            raise ConfigError(f"unknown config key {name!r} (known here: {known})")
        if isinstance(out[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {name!r} must be a table, got {value!r}")
            out[key] = merge(out[key], value, f"{name}.")
        else:
            out[key] = _coerce(name, out[key], value)
    return out


def _coerce(name: str, default: Any, value: Any) -> Any:
    """Check `value` against the type of the default (ints are accepted where floats are expected)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return list(value)
    elif isinstance(value, type(default)):
        return value
    raise ConfigError(f"config key {name!r} expects {type(default).__name__}, got {value!r}")


def parse_override(text: str) -> dict[str, Any]:
    """`a.b=3` → {"a": {"b": 3}}; the value is read as a TOML value (bare words become strings)."""
    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. zoo.subnets=200), got {text!r}")
    key, raw = (s.strip() for s in text.split("=", 1))
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(
    defaults: Mapping[str, Any], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Defaults ← TOML file at `path` ← each `--set` override, in that order."""
    config = copy.deepcopy(dict(defaults))
    if path is not None:
        try:
            with open(path, "rb") as f:
                config = merge(config, tomllib.load(f))
        except FileNotFoundError:
            raise ConfigError(f"config file {os.fspath(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {os.fspath(path)!r} is not valid TOML: {e}") from None
    for text in overrides:
        config = merge(config, parse_override(text))
    return config
