"""How recipe problems are told: pydantic validation errors as `dotted.path: what is wrong (got VALUE)` lines,
and YAML syntax errors with their line and column. Imports no torch (and nothing of the schema: the root model
is passed in)."""
from __future__ import annotations

import typing
from typing import Annotated, Any, Optional, Union

import yaml
from pydantic import BaseModel, Tag, ValidationError

from mmtok.registry import did_you_mean


class FieldProblem(ValueError):
    """Raised by a model validator for a problem that belongs to one of the model's fields: the error is then
    reported at that field's path (`model.resolution: ...`), not at the whole section."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def yaml_where(e: yaml.YAMLError) -> str:
    """' at line L, column C: problem (context started at line ...)' from a YAML error, 1-based, on one line."""
    if not isinstance(e, yaml.MarkedYAMLError):
        return f": {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    mark = e.problem_mark or e.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    text = f"{where}: {e.problem or e.context or 'syntax error'}"
    if e.problem and e.context:
        cm = e.context_mark
        started = f" started at line {cm.line + 1}, column {cm.column + 1}" if cm and cm is not mark else ""
        text += f" ({e.context}{started})"
    return text


# custom union-tag errors (a Discriminator's custom_error_type) -> the key that holds the tag
_TAG_KEYS = {"quantizer_kind": "kind"}
_NOTHING = object()


def describe_errors(e: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per problem, `dotted.path: what is wrong (got VALUE)`, in the order pydantic found them.

    A value that fails every member of a plain union is one problem at the union's path (each member's
    complaint joined), not one per member; a model validator's `FieldProblem` is reported at its field; whole
    sections are never echoed."""
    lines: list[Any] = []  # str, or [path, [member complaints], value] for a union
    unions: dict[str, list] = {}
    for err in e.errors():
        path, text, value, member = _describe_error(err, root)
        if member is None:
            lines.append(f"{path}: {text}{_got(value)}")
        elif path in unions:
            unions[path][1].append(f"{member}{text}")
        else:
            unions[path] = [path, [f"{member}{text}"], value]
            lines.append(unions[path])
    return [line if isinstance(line, str) else
            f"{line[0]}: fits none of its accepted forms: {'; '.join(line[1])}{_got(line[2])}" for line in lines]


def _describe_error(err: dict, root: type[BaseModel]) -> tuple[str, str, Any, str | None]:
    """(dotted path as the user wrote it, what is wrong, the offending value or _NOTHING, None or - for one
    member's error of a plain union - the path inside the member ('' or 'item 1: ')). The path of a union
    member's error stops at the union."""
    raw_loc = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
    value = err.get("input", _NOTHING)
    cause = (err.get("ctx") or {}).get("error")
    msg = err["msg"]
    if isinstance(cause, Exception) and err["type"] in ("value_error", "assertion_error"):
        msg = str(cause)  # without pydantic's "Value error, " prefix
    if isinstance(cause, FieldProblem):
        raw_loc += (cause.field,)
        value = value.get(cause.field, _NOTHING) if isinstance(value, dict) else _NOTHING
    tag = _TAG_KEYS.get(err["type"])
    if tag and isinstance(value, dict) and tag in value:
        raw_loc += (tag,)
        value = value[tag]
    loc, _, union_at = _walk(root, raw_loc)
    member = None
    if union_at is not None:
        inner = loc[union_at:]
        member = f"item {'.'.join(str(p) for p in inner)}: " if inner else ""
        loc = loc[:union_at]
    path = ".".join(str(p) for p in loc) or "(top)"
    if err["type"] == "extra_forbidden":
        fields = _fields_at(root, raw_loc[:-1])
        hint = did_you_mean(str(loc[-1]), fields, list_known=False) if fields else ""
        return path, "unknown key" + (f" ({hint})" if hint else ""), _NOTHING, None
    return path, msg, value, member


def _got(value: Any) -> str:
    """' (got VALUE)', short; nothing for a whole section (a mapping) or when there is no value."""
    if value is _NOTHING or isinstance(value, dict):
        return ""
    text = repr(value)
    return f" (got {text if len(text) <= 80 else text[:77] + '...'})"


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the pydantic model found at `loc` inside `cls` (empty if not a model)."""
    found = _walk(cls, loc)[1]
    return list(found.model_fields) if found is not None else []


def _walk(cls: type[BaseModel], loc: tuple) -> tuple[tuple, type[BaseModel] | None, int | None]:
    """Follow a pydantic error `loc` down from `cls`: (the loc as the user wrote it, the model class found there
    or None, None or - when the loc went through a member of a plain union - the length of the returned loc at
    that union).

    After a tagged-union field pydantic inserts the member's tag (('model', 'quantizer', 'fsq', 'levls')): the
    tag picks the member and is dropped from the returned loc. A union without a tag in the loc means its first
    member (the default kind). Inside a plain union of non-model types (`int | list[int]`) pydantic inserts the
    member's type ('int', "literal['auto']"): it is dropped too."""
    out: list = []
    union_at = None
    members: list[tuple[type[BaseModel], Optional[str]]] = [(cls, None)]
    annotation: Any = None  # the non-model type being walked, once the loc leaves the models
    for part in loc:
        if not members:
            if isinstance(part, str) and union_at is None and len(_union_args(annotation)) > 1:
                union_at, annotation = len(out), None
                continue
            out.append(part)
            annotation = None
            continue
        tagged = {tag: c for c, tag in members if tag is not None}
        if len(members) > 1 and str(part) in tagged:
            members = [(tagged[str(part)], None)]
            continue
        out.append(part)
        field = members[0][0].model_fields.get(str(part))
        members = _members(field.annotation, field.discriminator) if field is not None else []
        annotation = field.annotation if field is not None else None
    return tuple(out), (members[0][0] if members else None), union_at


def _union_args(annotation: Any) -> tuple:
    """The non-None members of a Union annotation (Annotated and Optional unwrapped); () if not a union."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is not Union:
        return ()
    return tuple(a for a in typing.get_args(annotation) if a is not type(None))


def _members(annotation, discriminator=None) -> list[tuple[type[BaseModel], Optional[str]]]:
    """(model class, union tag or None) for every pydantic model inside an annotation: itself, or the members
    of a union / Optional. Tags come from `Tag(...)` metadata or from the Literal field a string
    `discriminator` names."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(discriminator) if isinstance(discriminator, str) else None
        literal = typing.get_args(field.annotation) if field is not None else ()
        return [(annotation, str(literal[0]) if len(literal) == 1 else None)]
    if typing.get_origin(annotation) is Annotated:
        tags = [m.tag for m in annotation.__metadata__ if isinstance(m, Tag)]
        inner = _members(typing.get_args(annotation)[0], discriminator)
        return [(c, tags[0]) for c, _ in inner] if tags and len(inner) == 1 else inner
    return [m for arg in typing.get_args(annotation) for m in _members(arg, discriminator)]
