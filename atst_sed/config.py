"""Typed configs: dataclasses with defaults, filled from YAML and ``key=value`` overrides.

Unknown keys are errors (with a did-you-mean suggestion); a value given on the command line keeps its
text, so errors name the command line (``command line: optim.lr=abc: expected float``) and a ``str``
field takes what the user typed (``name=2024``). YAML is read with the YAML 1.2 number rules
(``1e-3`` is a float, not the string YAML 1.1 makes of it). A value written as ``???`` must be given
(:func:`missing_keys`).

The YAML files that ship with atst-sed (``configs/``, ``recipes/``) are found by :func:`shipped_dir`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import yaml

from atst_sed.errors import AtstSedError, InputError
from atst_sed.fileio import atomic_write_text

T = TypeVar("T")

MISSING = "???"  # a recipe value the user must give (OmegaConf's marker)


# ----------------------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats: ``1e-3`` and ``5E-4`` are numbers (YAML 1.1 needs ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text (safe, YAML 1.2 floats)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: str | PathLike[str]) -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing file or bad YAML → :class:`InputError` (line included)."""
    path = Path(path)
    try:
        data = load_yaml(path.read_text()) or {}
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a YAML file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(path, f"invalid YAML ({getattr(err, 'problem', err)})", line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a YAML mapping at the top level")
    return data


def write_yaml(path: str | PathLike[str], data: Any) -> None:
    """Write ``data`` (a dataclass or mapping) as YAML to the output ``path``."""
    atomic_write_text(path, yaml.safe_dump(to_dict(data), sort_keys=False))


# ----------------------------------------------------------------------------------------- overrides
@dataclass(frozen=True)
class CommandLineValue:
    """One ``key=value`` of the command line: ``item`` as typed, the ``text`` after ``=`` and its YAML
    reading ``value``. It travels through the merged config dict until the typed conversion, which
    reports errors as ``command line: <item>: …`` and gives ``str`` fields the text itself."""

    item: str
    text: str
    value: Any


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` → nested dict of :class:`CommandLineValue` leaves (values read as
    YAML; a mapping value becomes one leaf per key, so it merges like a YAML section)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(f"command line: {item!r} is not KEY=VALUE (e.g. optim.lr=1e-3)")
        try:
            value = load_yaml(raw) if raw != "" else ""
        except yaml.YAMLError as err:
            raise ValueError(f"command line: {item}: not a YAML value ({getattr(err, 'problem', err)})") from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = _leaves(item, raw, value)
    return out


def _leaves(item: str, text: str, value: Any) -> Any:
    if isinstance(value, dict) and value:
        return {k: _leaves(item, str(v), v) for k, v in value.items()}
    return CommandLineValue(item, text, value)


def plain(data: Any) -> Any:
    """``data`` with every :class:`CommandLineValue` replaced by its value."""
    if isinstance(data, CommandLineValue):
        return data.value
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    return data


def command_line_items(data: Any) -> list[str]:
    """The command-line items (``key=value``) that ``data`` holds, in order, each once."""
    if isinstance(data, CommandLineValue):
        return [data.item]
    if isinstance(data, dict):
        return list(dict.fromkeys(i for v in data.values() for i in command_line_items(v)))
    return []


def missing_keys(data: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is still :data:`MISSING` (``???``)."""
    if isinstance(data, CommandLineValue):
        return [prefix] if data.value == MISSING else []
    if isinstance(data, dict):
        return [k for key, v in data.items() for k in missing_keys(v, f"{prefix}.{key}" if prefix else str(key))]
    return [prefix] if data == MISSING else []


# ----------------------------------------------------------------------------------------- typed conversion
class ConfigError(ValueError):
    """A bad key or value at dotted ``key``; ``origin`` names the command-line item it came from."""

    def __init__(self, key: str, problem: str, origin: str | None = None):
        self.key, self.problem, self.origin = key, problem, origin
        super().__init__(self.located("config"))

    def located(self, where: str) -> str:
        """One line: ``command line: <item>: <problem>``, or ``<where>: <key>: <problem>``."""
        if self.origin:
            return f"{self.origin}: {self.problem}"
        return f"{where}: {self.key}: {self.problem}" if self.key else f"{where}: {self.problem}"


def _accepts_str(tp: Any) -> bool:
    if tp is str:
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp)


def _convert(tp: Any, value: Any, key: str) -> Any:
    if isinstance(value, CommandLineValue):
        try:
            return _convert(tp, value.value, key)
        except ConfigError as err:
            if _accepts_str(tp) and not isinstance(value.value, (dict, list)):
                return value.text  # name=2024, tag=1e3: a str field takes the text as typed
            raise ConfigError(key, err.problem, f"command line: {value.item}") from None
    if value is None:
        return None
    if tp is Any:
        return plain(value)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return from_dict(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError:
                continue
        names = " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in args)
        raise ConfigError(key, f"expected {names}, got {plain(value)!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_convert(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {plain(value)!r}")
        _, vt = args if args else (Any, Any)
        return {k: _convert(vt, v, f"{key}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(key, f"{value!r} is not one of {list(args)}")
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # `name: 2024` in a YAML file
    if tp in (int, float, bool, str):
        raise ConfigError(key, f"expected {tp.__name__}, got {value!r}")
    return value


def _unknown_key(data: dict[str, Any], name: str, names: list[str], prefix: str) -> ConfigError:
    key = f"{prefix}.{name}" if prefix else name
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"; did you mean {prefix + '.' if prefix else ''}{close[0]}?" if close else f"; known: {', '.join(sorted(names))}"
    items = command_line_items(data[name])
    return ConfigError(key, f"unknown key {key}{hint}", f"command line: {items[0]}" if items else None)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (``where``: the dotted key of ``data``, for messages);
    unknown keys and wrongly typed values raise :class:`ConfigError`."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for name in data:
        if name not in names:
            raise _unknown_key(data, name, names, where)
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # a dataclass's own checks (__post_init__)
        items = command_line_items(data)
        raise ConfigError("", str(err), f"command line: {', '.join(items)}" if items else None) from None


def to_dict(obj: Any) -> Any:
    """Dataclass → plain nested dict (tuples become lists) for YAML/JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, CommandLineValue):
        return to_dict(obj.value)
    return obj


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------------------- shipped files
def shipped_dir(name: str) -> Path:
    """``configs`` or ``recipes`` as shipped with atst-sed: package data of an installed wheel
    (``atst_sed/<name>/``, built from the repository's top-level folder), or that top-level folder
    itself in a source checkout. There is one copy of each file; a missing folder is an error."""
    package = Path(__file__).resolve().parent
    for folder in (package / name, package.parent / name):
        if folder.is_dir():
            return folder
    raise AtstSedError(f"atst-sed's {name}/ folder is missing from {package} (a broken installation?)")


def resolve_named(arg: str | PathLike[str], *, in_folder: str, shipped: str, pattern: str, what: str) -> Path:
    """The YAML file ``arg`` names: a YAML file, a folder holding ``in_folder``, or a bare name looked
    up as ``pattern.format(name=...)`` in ``./<shipped>/`` and then in :func:`shipped_dir`. An unknown
    name → :class:`InputError` listing the available names."""
    path = Path(arg).expanduser()
    if path.is_dir():
        if (path / in_folder).is_file():
            return path / in_folder
        raise InputError(path, f"no {in_folder} in this folder")
    if path.is_file():
        return path
    folders = list(dict.fromkeys(d.resolve() for d in (Path.cwd() / shipped, shipped_dir(shipped)) if d.is_dir()))
    if not path.suffix:
        for folder in folders:
            candidate = folder / pattern.format(name=path.name)
            if candidate.is_file():
                return candidate
    name_in = re.compile(re.escape(pattern).replace(re.escape("{name}"), "(?P<name>[^/]+)") + "$")
    found = (name_in.match(p.relative_to(f).as_posix()) for f in folders for p in f.glob(pattern.format(name="*")))
    available = sorted({m["name"] for m in found if m})
    raise InputError(path, f"no such {what} (a YAML file, a folder with {in_folder}, or one of: {', '.join(available)})")
