"""Params files and overrides into a validated :class:`~distill.config.schema.Params`.

Later files and ``key=value`` overrides are deep-merged onto earlier ones, which is how
``params/benchmark.yaml`` and ``prefect deployment run -p train.epochs=2`` work. Unknown keys and
mistyped values are errors that name the file and key, so a typo fails before any model loads.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from distill.config.base import ParamsError
from distill.config.schema import Params


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``update`` merged in; nested dicts merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(override: str) -> dict[str, Any]:
    """Turn ``"train.epochs=2"`` into ``{"train": {"epochs": 2}}``; the value is parsed as YAML."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ParamsError(f"override {override!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=2")
    value = yaml.safe_load(raw) if raw.strip() else None
    nested: dict[str, Any] = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def read_params_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ParamsError(f"params file {path} is not valid UTF-8 YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"params file {path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        got = item.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        # A validator's own message already names its keys: pydantic's "Value error, " prefix adds nothing.
        lines.append(f"  {key}: {item['msg'].removeprefix('Value error, ')}{got_text}")
    return f"invalid params in {source}:\n" + "\n".join(lines)


def params_from_dict(data: dict[str, Any], source: str = "params") -> Params:
    """Validate a plain dict; errors name every offending key."""
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_format_errors(err, source)) from None


def load_params(
    files: list[str | Path] | str | Path = "params.yaml",
    overrides: list[str] | None = None,
    updates: dict[str, Any] | None = None,
) -> Params:
    """Load and validate params: files deep-merged in order, then ``key=value`` overrides, then
    ``updates`` (a partial params mapping, e.g. ``{"train": {"epochs": 2}}``)."""
    paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
    data: dict[str, Any] = {}
    for path in paths:
        data = deep_merge(data, read_params_file(path))
    for override in overrides or []:
        data = deep_merge(data, parse_override(override))
    data = deep_merge(data, updates or {})
    source = " + ".join(str(p) for p in paths)
    if overrides or updates:
        source += f" with overrides {[*(overrides or []), *([updates] if updates else [])]}"
    return params_from_dict(data, source)


def dotted_leaves(mapping: dict[str, Any], split_lists: bool = False) -> dict[str, Any]:
    """``{"train": {"epochs": 2}}`` → ``{"train.epochs": 2}``: every leaf under its dotted key. A mapping
    is walked key by key (an empty one adds nothing, as it merges nothing); a list is one leaf (it
    replaces when merged), or with ``split_lists`` a non-empty list of mappings is walked by index."""
    leaves: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif split_lists and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for index, item in enumerate(value):
                walk(f"{prefix}.{index}", item)
        else:
            leaves[prefix] = value

    walk("", mapping)
    return leaves


def flatten(params: Params) -> dict[str, Any]:
    """Dotted-key view of the params, for MLflow and reports."""
    return dotted_leaves(params.model_dump(mode="json", by_alias=True), split_lists=True)
