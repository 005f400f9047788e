"""Reading configs: YAML with duplicate keys refused, ``--set`` overrides, and validation errors
that name the key, its line in the file and the nearest valid key.

Schema-agnostic: :mod:`sparring.config` passes its :class:`~sparring.config.RunConfig` in.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sparring.errors import ConfigError


def parse_override(item: str) -> tuple[list[str], Any]:
    """``'a.b.c=value'`` -> (['a', 'b', 'c'], value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} must look like 'section.key=value'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key in ``data`` (a nested dict, changed in place and returned)."""
    for item in overrides:
        path, value = parse_override(item)
        node: Any = data
        for i, part in enumerate(path[:-1]):
            where = ".".join(path[: i + 1])
            if isinstance(node, list):
                node = node[_list_index(part, node, where, item)]
                continue
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict | list):
                raise ConfigError(f"override {item!r}: {where!r} is a value, not a section")
        last = path[-1]
        if isinstance(node, list):
            node[_list_index(last, node, ".".join(path), item)] = value
        else:
            node[last] = value
    return data


def _list_index(part: str, node: list, where: str, item: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"override {item!r}: {where!r} needs an index below {len(node)}")
    return int(part)


class UniqueKeySafeLoader(yaml.SafeLoader):
    """The safe loader, except that a key given twice in one mapping is an error (plain YAML
    loaders keep the last value silently, so a forgotten line would win or lose by position)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line})",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: str | Path) -> tuple[dict[str, Any], str]:
    """(the mapping, the text) of a YAML file; a ConfigError names the file and what is wrong
    (missing, not UTF-8, invalid YAML, a key given twice, not a mapping)."""
    source = str(path)
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {source} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=UniqueKeySafeLoader) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {source} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {source} is not valid YAML: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {source} must hold a mapping at the top level, not {type(data).__name__}"
        )
    return data, text


#: fields whose value is never repeated in an error: it may be a credential pasted in the wrong
#: place (a key in api_key_env, a user:password in a URL)
SECRET_FIELDS = frozenset({"api_key_env", "base_url", "url", "headers", "headers_env"})


def format_validation_error(
    exc: ValidationError,
    root: type[BaseModel],
    source: str,
    text: str | None,
    overridden: frozenset[str] = frozenset(),
) -> str:
    """One line per error: the dotted key, its YAML line (or "set on the command line"), and
    for an unknown key the nearest valid one; ``root`` is the schema validated against."""
    lines = [f"invalid config {source}:"]
    for err in exc.errors():
        loc = _walk(root, err["loc"])[0]
        dotted = ".".join(str(x) for x in loc) or "<top level>"
        where = _yaml_line(text, loc) if text else None
        if where is None and text and "endpoint" in loc:
            # a served model's keys are written beside ``model`` and moved into ``endpoint``
            loc = [x for x in loc if x != "endpoint"]
            dotted = ".".join(str(x) for x in loc)
            where = _yaml_line(text, loc)
        at = f" (line {where})" if where else ""
        if any(k == dotted or k.startswith(dotted + ".") for k in overridden):
            at = " (set on the command line)"
        if err["type"] == "extra_forbidden":
            names = _valid_names(root, err["loc"][:-1])
            close = _nearest(str(loc[-1]), names)
            hint = f"; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?" if close else ""
            lines.append(
                f"  {dotted}{at}: unknown key{hint} (valid here: {', '.join(sorted(names))})"
            )
        elif err["type"] == "missing":
            lines.append(f"  {dotted}{at}: required field is missing")
        else:
            got = err.get("input")
            secret = any(str(x) in SECRET_FIELDS for x in err["loc"])
            shown = "" if isinstance(got, dict | list) or secret else f" (got {got!r})"
            lines.append(f"  {dotted}{at}: {err['msg']}{shown}")
    return "\n".join(lines)


def _nearest(key: str, names: list[str]) -> list[str]:
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    if not close:
        close = [n for n in names if key.startswith(n) or n.startswith(key)][:1]
    return close


def _valid_names(root: Any, loc: tuple) -> list[str]:
    """The keys of the model at pydantic's ``loc`` (the tagged member where it names one)."""
    return sorted({n for m in _members(_walk(root, loc)[1]) for n in _fields_of(m) or []})


def _walk(root: Any, loc: tuple) -> tuple[list, Any]:
    """``loc`` without pydantic's union tags (e.g. the 'callable' in judge.callable.target), and
    the type it leads to (a union's tagged member)."""
    out: list = []
    model: Any = root
    for part in loc:
        known = {name for m in _members(model) for name in (_fields_of(m) or {})}
        if isinstance(part, str) and part not in known:
            member = _union_member(model, part)
            if member is not None:
                model = member
                continue
        out.append(part)
        model = _child(model, part)
    return out, model


def _fields_of(model: Any) -> dict | None:
    return model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else None


def _members(tp: Any) -> list:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [tp]


def _union_member(tp: Any, tag: str) -> Any:
    for m in _members(tp):
        fields = _fields_of(m)
        if fields and "type" in fields and fields["type"].default == tag:
            return m
    return None


def _child(tp: Any, part: Any) -> Any:
    for m in _members(tp):
        fields = _fields_of(m)
        if fields is not None and part in fields:
            return fields[part].annotation
        origin = typing.get_origin(m)
        if origin in (list, tuple) and isinstance(part, int):
            return typing.get_args(m)[0]
    return None


def _yaml_line(text: str, loc: list) -> int | None:
    """1-based line of the key at ``loc`` in the YAML text; None when it is not in the file."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return None
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return None
    return line


def read_yaml_block(path: str | Path, key: str, *, option: str, expected: str) -> dict[str, Any]:
    """The mapping a YAML file holds, or the ``key`` block of the run config it holds (a judge
    spec file or a run config's ``judge``; a target file or a run config's ``defender``).
    ``option`` and ``expected`` word the errors, which name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{option} {path}: cannot read it: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get(key), dict):
        data = data[key]
    if not isinstance(data, dict):
        raise ConfigError(f"{option} {path}: expected {expected}")
    return dict(data)
