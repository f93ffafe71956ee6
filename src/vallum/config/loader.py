"""Reading `vallum.yaml`: YAML → strict validation → `Config`, with errors that name the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vallum.config.schema import Config


class ConfigError(ValueError):
    """A configuration that cannot be used; `errors` lists each problem with its key path."""

    def __init__(self, errors: list[str], source: str = "config") -> None:
        self.errors = errors
        self.source = source
        super().__init__(f"{source}: " + "; ".join(errors))


def _path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    loc = _path(tuple(err.get("loc", ())))
    if err.get("type") == "extra_forbidden":
        key = err["loc"][-1] if err.get("loc") else "?"
        return f"unknown key '{key}' at {loc}"
    return f"{loc}: {err.get('msg', 'invalid value')}"


def parse_config(data: Any, source: str = "config") -> Config:
    """Validate an already-parsed mapping (None or empty = all defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"the top level must be a mapping, not {type(data).__name__}"], source)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()], source) from None


def load_config(path: str | Path | None) -> Config:
    """Load a config file; `None` gives the embedded defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read: {exc}"], str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"invalid YAML: {exc}"], str(p)) from None
    return parse_config(data, str(p))
