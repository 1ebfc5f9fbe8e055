"""Typed, strict configuration for every stage.

A stage's config is a dataclass whose fields carry a default and a ``help`` text (see
:func:`option`). :func:`load_config` builds it with the precedence

    defaults < ``<config_dir>/<env-type>.yaml`` < ``--config FILE`` < command-line flags

where flags are the field names in kebab-case (``--num-iters 10``) and booleans accept
true/false/1/0. Anything unknown or badly typed raises :class:`ConfigError` (a UserError: exit code
2) naming the key, the file and the closest valid names. The resolved config is written to the run
directory as ``config.yaml`` (:func:`save_config`) and read back strictly
(:func:`load_saved_config`).
YAML is always read with the safe loader; values are never evaluated as code.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from utils.errors import UserError, closest_names
from utils.io import atomic_write_text

ConfigType = TypeVar("ConfigType")
TRUE_WORDS = ("true", "1")
FALSE_WORDS = ("false", "0")
NONE_WORDS = ("none", "null", "~")


class ConfigError(UserError):
    """A config file or flag that names an unknown key or holds a value of the wrong type."""


def option(default: Any, help: str) -> Any:
    """A dataclass field with a default (lists and dicts copied per instance) and a help text."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(
            default_factory=lambda value=default: type(value)(value), metadata={"help": help}
        )
    return dataclasses.field(default=default, metadata={"help": help})


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def field_types(config_class: type) -> dict[str, Any]:
    """Field name -> resolved type annotation."""
    hints = typing.get_type_hints(config_class)
    return {field.name: hints[field.name] for field in dataclasses.fields(config_class)}


def describe_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is list:
        return f"list of {describe_type(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any, from_text: bool) -> Any:
    """Return ``value`` as ``annotation`` or raise TypeError; ``from_text``: a CLI string."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        arguments = typing.get_args(annotation)
        if type(None) in arguments and (
            value is None or (from_text and str(value).lower() in NONE_WORDS)
        ):
            return None
        for argument in arguments:
            if argument is type(None):
                continue
            try:
                return _coerce(value, argument, from_text)
            except TypeError:
                continue
        raise TypeError
    if origin is Literal:
        if value in typing.get_args(annotation):
            return value
        raise TypeError
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if from_text and str(value).lower() in TRUE_WORDS + FALSE_WORDS:
            return str(value).lower() in TRUE_WORDS
        raise TypeError
    if annotation is int:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer() and not from_text:
            return int(value)
        if from_text:
            try:
                return int(str(value))
            except ValueError:
                number = float(str(value)) if _is_number(str(value)) else None
                if number is not None and number.is_integer():
                    return int(number)
        raise TypeError
    if annotation is float:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, (int, float)):
            try:
                number = float(value)
            except OverflowError:
                raise TypeError from None
            if math.isfinite(number):  # NaN and infinity are never a valid setting
                return number
            raise TypeError
        if from_text and _is_number(str(value)):
            return float(str(value))
        raise TypeError
    if annotation is str:
        if isinstance(value, str):
            return value
        raise TypeError
    if origin is list:
        if from_text and isinstance(value, str):
            value = _parse_text_list(value)
        if not isinstance(value, list):
            raise TypeError
        (item_type,) = typing.get_args(annotation)
        return [_coerce(item, item_type, from_text) for item in value]
    if origin is dict:
        if from_text and isinstance(value, str):
            value = _parse_text_mapping(value)
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise TypeError
        return dict(value)
    raise TypeError


def _is_number(text: str) -> bool:
    """Whether ``text`` is a finite number."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _parse_text_list(text: str) -> list[str]:
    """``"128,128"``, ``"128 128"`` or ``"[128, 128]"`` -> ["128", "128"]."""
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        stripped = stripped[1:-1]
    return [item.strip() for item in stripped.replace(",", " ").split() if item.strip()]


def _parse_text_mapping(text: str) -> dict[str, Any]:
    """``"a=1,b=uniform"`` or a YAML/JSON mapping -> dict (values read by the YAML safe loader)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            loaded = yaml.safe_load(stripped)
        except yaml.YAMLError as error:
            raise TypeError from error
        if not isinstance(loaded, dict):
            raise TypeError
        return loaded
    mapping: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in stripped.split(","))):
        if "=" not in item:
            raise TypeError
        key, raw = item.split("=", 1)
        mapping[key.strip()] = yaml.safe_load(raw)
    return mapping


def coerce_field(config_class: type, key: str, value: Any, source: str, from_text: bool) -> Any:
    """Check and convert one value for ``key``; unknown keys and wrong types raise ConfigError."""
    types_by_name = field_types(config_class)
    if not isinstance(key, str):
        raise ConfigError(f"key {key!r} in {source} is not a name (keys are field names such "
                          f"as {next(iter(types_by_name))})")
    if key not in types_by_name:
        names = [flag_name(name) for name in types_by_name] if from_text else list(types_by_name)
        shown = flag_name(key) if from_text else key
        kind = "flag" if from_text else "key"
        raise ConfigError(
            f"unknown {kind} {shown!r} in {source}{closest_names(shown, names)}"
        )
    annotation = types_by_name[key]
    try:
        return _coerce(value, annotation, from_text)
    except TypeError:
        shown = flag_name(key) if from_text else key
        raise ConfigError(
            f"{shown} in {source} must be {describe_type(annotation)}, got {value!r}"
        ) from None


def read_mapping_file(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON file holding a mapping (empty file -> {})."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, ValueError) as error:  # unreadable, or not UTF-8 text
        raise ConfigError(f"config file {path} cannot be read: {error}") from None
    try:
        if path.suffix == ".json":
            loaded = json.loads(text) if text.strip() else {}
        else:
            loaded = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as error:
        # ValueError and TypeError: YAML scalars the safe loader cannot build (2020-13-45)
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:] or 'YAML'}: "
                          f"{problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return loaded


def apply_mapping(
    config: ConfigType, mapping: dict[str, Any], source: str, from_text: bool = False
) -> ConfigType:
    """Return ``config`` with the keys of ``mapping`` replaced, each checked strictly."""
    updates = {
        key: coerce_field(type(config), key, value, source, from_text)
        for key, value in mapping.items()
    }
    return dataclasses.replace(config, **updates)


def parse_flags(config_class: type, argv: list[str]) -> tuple[dict[str, str], str | None]:
    """Split ``--name value`` / ``--name=value`` pairs into {field_name: text} and --config."""
    flags: dict[str, str] = {}
    config_file: str | None = None
    index = 0
    while index < len(argv):
        token = argv[index]
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"unexpected argument {token!r}: flags look like --name value")
        if "=" in token:
            name, value = token[2:].split("=", 1)
            index += 1
        else:
            name = token[2:]
            if index + 1 >= len(argv) or (
                argv[index + 1].startswith("--") and len(argv[index + 1]) > 2
            ):
                raise ConfigError(f"flag --{name} needs a value (booleans: true/false/1/0)")
            value = argv[index + 1]
            index += 2
        key = name.replace("-", "_")
        if key == "config":
            config_file = value
            continue
        if key in flags:
            raise ConfigError(f"flag --{name} is given twice")
        coerce_field(config_class, key, value, "the command line", from_text=True)
        flags[key] = value
    return flags, config_file


def config_help(config_class: type, program: str, config_dir: str | None,
                usage: str | None = None) -> str:
    """The text of ``--help``: every flag with its type, default and meaning."""
    stage_usage = f"python {program} --env-type ENV [--config FILE] [--name value ...]"
    lines = [f"usage: {usage or stage_usage}", ""]
    if config_dir:
        suffix = "json" if config_dir == "configs" else "yaml"
        lines.append(f"Per-env defaults are read from {config_dir}/<env-type>.{suffix}.")
    if usage is None:
        lines.append("Precedence: defaults < env file < --config FILE < flags.")
        lines.append("")
    types_by_name = field_types(config_class)
    for field in dataclasses.fields(config_class):
        default = (
            field.default
            if field.default is not dataclasses.MISSING
            else field.default_factory()  # type: ignore[misc]
        )
        lines.append(
            f"  {flag_name(field.name):32s} {describe_type(types_by_name[field.name])} "
            f"(default {default!r})"
        )
        lines.append(f"      {field.metadata.get('help', '')}")
    return "\n".join(lines)


def env_file_path(config_dir: Path, env_type: str) -> Path:
    """The per-env file of ``env_type`` in ``config_dir`` (``.yaml`` or, for FOCAL, ``.json``)."""
    for suffix in (".yaml", ".json"):
        candidate = config_dir / f"{env_type}{suffix}"
        if candidate.is_file():
            return candidate
    available = sorted(path.stem for path in config_dir.glob("*.yaml")) + sorted(
        path.stem for path in config_dir.glob("*.json")
    )
    raise ConfigError(
        f"no config file for env-type {env_type!r} in {config_dir}/"
        f"{closest_names(env_type, available)}; available: {', '.join(available) or 'none'}"
    )


def load_config(
    config_class: type[ConfigType],
    argv: list[str] | None = None,
    config_dir: str | Path | None = None,
    program: str = "script.py",
) -> ConfigType:
    """Build a stage config from defaults, the env file, ``--config FILE`` and flags.

    ``config_class`` must have an ``env_type`` field. ``config_dir`` is resolved relative to the
    repository root (the folder holding this package) unless absolute.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(config_help(config_class, program, str(config_dir) if config_dir else None))
        raise SystemExit(0)
    flags, config_file = parse_flags(config_class, argv)
    config = config_class()
    file_mapping: dict[str, Any] = {}
    if config_file is not None:
        file_mapping = read_mapping_file(Path(config_file))
    env_type = flags.get("env_type") or file_mapping.get("env_type") or config.env_type
    if not env_type:
        raise ConfigError("missing --env-type (for example --env-type gridworld)")
    if config_dir is not None:
        directory = Path(config_dir)
        if not directory.is_absolute():
            directory = repository_root() / directory
        env_file = env_file_path(directory, str(env_type))
        relative = f"{directory.name}/{env_file.name}"
        config = apply_mapping(config, read_mapping_file(env_file), relative)
    if config_file is not None:
        config = apply_mapping(config, file_mapping, config_file)
    config = apply_mapping(config, flags, "the command line", from_text=True)
    return dataclasses.replace(config, env_type=str(env_type))


def repository_root() -> Path:
    return Path(__file__).resolve().parent.parent


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Any, path: Path) -> None:
    """Write the resolved config as YAML, atomically."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)
    atomic_write_text(path, text)


def load_saved_config(config_class: type[ConfigType], path: Path) -> ConfigType:
    """Read a run's ``config.yaml`` back into ``config_class``, strictly."""
    return apply_mapping(config_class(), read_mapping_file(path), str(path))
