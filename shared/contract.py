"""Building blocks of every service's API contract: integer bounds that match the columns behind them, and the
PATCH body whose `null` means "empty" only where a value may be empty.

Validation is where bad input is refused: a value the schema lets through and the database then refuses is a bug
in the schema (shared/errors.py still answers it with a 422, as a last line).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# PostgreSQL `integer`: money in fen, counts, quantities, minutes and metres are stored in one.
INT4_MAX = 2**31 - 1

Fen = Annotated[int, Field(ge=0, le=INT4_MAX, description="Money in fen (0.01 yuan)")]
Count = Annotated[int, Field(ge=0, le=INT4_MAX)]
Offset = Annotated[int, Query(ge=0, le=INT4_MAX, description="Items to skip")]


def _non_nullable_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Publishes the fields `null` is refused for as what they are (a string, not "a string or null")."""
    nullable: frozenset[str] = getattr(model, "nullable", frozenset())
    for name, field_schema in schema.get("properties", {}).items():
        if name in nullable or "anyOf" not in field_schema:
            continue
        variants = [v for v in field_schema["anyOf"] if v != {"type": "null"}]
        if len(variants) == 1:
            del field_schema["anyOf"]
            field_schema.update(variants[0])
        if field_schema.get("default", ...) is None:
            del field_schema["default"]


class PartialUpdate(BaseModel):
    """A PATCH body: any subset of the fields; one left out keeps its value. `null` clears a field only where it
    may be empty (listed in `nullable`); for any other field it is a 422, not a NOT NULL violation at commit."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_non_nullable_schema)

    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _null_only_where_nullable(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise ValueError(f"{info.field_name} cannot be null; leave it out to keep its value")
        return value
