"""Whether a consumer's view can read what a publisher sends, judged on their JSON schemas (pydantic's): every
field the view reads is in the publisher's model under the same name, with a type the view accepts (an integer is
a number; `null` only where the view takes it), and present whenever the view requires it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

Schema = dict[str, Any]


def incompatibilities(view: type[BaseModel], publisher: type[BaseModel]) -> list[str]:
    """What `view` reads that `publisher` does not send as the view expects; empty when the view fits."""
    view_schema = view.model_json_schema(mode="validation")
    sent = publisher.model_json_schema(mode="serialization")
    return _compare(_Side(view_schema, view_schema.get("$defs", {})), _Side(sent, sent.get("$defs", {})), view.__name__)


class _Side:
    def __init__(self, schema: Schema, defs: dict[str, Schema]) -> None:
        self.schema, self.defs = schema, defs

    def at(self, schema: Schema) -> _Side:
        return _Side(schema, self.defs)

    def alternatives(self) -> list[Schema]:
        """The schema's resolved alternatives (`anyOf`/`oneOf` flattened, `$ref`s followed)."""
        pending, found = [self.schema], []
        while pending:
            schema = pending.pop(0)
            if "$ref" in schema:
                schema = self.defs[schema["$ref"].rsplit("/", 1)[-1]]
            options = schema.get("anyOf") or schema.get("oneOf")
            if options:
                pending.extend(options)
            else:
                found.append(schema)
        return found


JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "NoneType": "null"}


def _type(schema: Schema) -> str | None:
    if "type" in schema:
        return str(schema["type"])
    values = [schema["const"]] if "const" in schema else schema.get("enum")
    names = {type(v).__name__ for v in values or ()}
    return JSON_TYPES.get(names.pop()) if len(names) == 1 else None


def _compare(view: _Side, sent: _Side, path: str) -> list[str]:
    problems: list[str] = []
    accepted = view.alternatives()
    if any(_type(a) is None and "properties" not in a for a in accepted):
        return []  # the view takes anything here
    for option in sent.alternatives():
        sent_type = _type(option)
        if sent_type is None:
            problems.append(
                f"{path}: the publisher sends anything here; the view expects {[_type(a) for a in accepted]}"
            )
            continue
        matches = [a for a in accepted if _type(a) == sent_type or (_type(a) == "number" and sent_type == "integer")]
        if not matches:
            shown = "null" if sent_type == "null" else sent_type
            problems.append(f"{path}: the publisher sends {shown}; the view takes {[_type(a) for a in accepted]}")
            continue
        best = min((_within(view.at(m), sent.at(option), path) for m in matches), key=len)
        problems.extend(best)
    return problems


def _within(view: _Side, sent: _Side, path: str) -> list[str]:
    """Problems of one sent alternative against one view alternative of the same type."""
    v, s = view.schema, sent.schema
    values = [v["const"]] if "const" in v else v.get("enum")
    if values is not None:
        sent_values = [s["const"]] if "const" in s else s.get("enum")
        if sent_values is None or not set(sent_values) <= set(values):
            return [f"{path}: the view takes only {values}; the publisher may send {sent_values or 'any value'}"]
    if _type(v) == "array":
        return _compare(view.at(v.get("items", {})), sent.at(s.get("items", {})), f"{path}[]")
    if _type(v) != "object":
        return []
    problems: list[str] = []
    fields: dict[str, Schema] = s.get("properties", {})
    required = set(s.get("required", ()))
    if not fields:  # a free mapping (dict[str, X]) at the publisher: only its values' type can be compared
        extra = s.get("additionalProperties", {})
        for name, schema in v.get("properties", {}).items():
            problems += _compare(view.at(schema), sent.at(extra if isinstance(extra, dict) else {}), f"{path}.{name}")
        if isinstance(v.get("additionalProperties"), dict):
            problems += _compare(view.at(v["additionalProperties"]), sent.at(extra), f"{path}.*")
        return problems
    for name, schema in v.get("properties", {}).items():
        where = f"{path}.{name}"
        if name not in fields:
            problems.append(f"{where}: the publisher sends no such field")
            continue
        if name in v.get("required", ()) and name not in required:
            problems.append(f"{where}: the view requires it; the publisher may leave it out")
        problems += _compare(view.at(schema), sent.at(fields[name]), where)
    if isinstance(v.get("additionalProperties"), dict):  # a view reading the object as a mapping of X
        for name, schema in fields.items():
            problems += _compare(view.at(v["additionalProperties"]), sent.at(schema), f"{path}.{name}")
    return problems
