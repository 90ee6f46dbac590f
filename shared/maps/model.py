"""Table maps: the product's language. One map pairs one F&O data entity with one Dataverse table.

The YAML under `maps/tables/` validates against these models (and `maps/schema.json`, generated from them).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from shared.side import Side as Side  # re-exported: maps name their sides with the one enum


class Direction(StrEnum):
    BOTH = "both"
    TO_DATAVERSE = "to_dataverse"
    TO_FNO = "to_fno"


def direction_into(side: Side) -> Direction:
    """The direction of a change written *into* `side`."""
    return Direction.TO_DATAVERSE if side is Side.DATAVERSE else Direction.TO_FNO


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FnoEntity(Strict):
    entity: str = Field(description="OData public collection (entity set), e.g. CustomersV3")
    key: list[str] = Field(min_length=1, description="Every key field of the entity, company included")
    virtual_table: str | None = Field(
        default=None, description="Its Dataverse virtual table for data events, e.g. mserp_custcustomerv3entity"
    )
    fields: list[str] = Field(default_factory=list, description="Other readable fields filters may use")


class DataverseTable(Strict):
    table: str = Field(description="Logical name, e.g. account")
    entity_set: str = Field(description="Web API entity set, e.g. accounts")
    key: list[str] = Field(min_length=1, description="The alternate key's columns (the integration key)")
    fields: list[str] = Field(default_factory=list, description="Other readable columns filters may use")


class Company(Strict):
    """Company striping: the F&O legal entity field ↔ the Dataverse company lookup; part of the integration key."""

    fno: str = "dataAreaId"
    dataverse: str | None = Field(
        default="msdyn_company",
        description="The lookup column to cdm_company; null when the Dataverse table is shared by all companies",
    )
    table_entity_set: str = "cdm_companies"
    code: str = Field(default="cdm_companycode", description="The company code column of cdm_company")
    default: str | None = Field(default=None, description="Company for writes into F&O when the row names none")


class TypeConversion(StrEnum):
    ENUM_CHOICE = "enum_choice"  # F&O enum symbol ↔ Dataverse choice number (value_map gives the pairs)
    NOYES_BOOLEAN = "noyes_boolean"  # F&O NoYes ('Yes'/'No') ↔ Dataverse two-option boolean
    DATE = "date"  # date only: F&O 2024-01-31T12:00:00Z ↔ Dataverse 2024-01-31
    DATETIME = "datetime"  # date and time, always UTC on both sides
    DECIMAL = "decimal"  # exact decimal, rounded to `scale` places on the way into either side
    TEXT = "text"


class TextRule(Strict):
    trim: bool = False
    case: Literal["upper", "lower"] | None = None
    max_length: int | None = Field(default=None, gt=0, description="Truncate to the target column's length")


class FieldMap(Strict):
    fno: str | None = Field(default=None, description="F&O field; absent for a derived Dataverse-only column")
    dataverse: str | None = Field(default=None, description="Dataverse column; absent for an F&O-only field")
    dir: Direction | None = Field(default=None, description="Defaults to the map's `dir`")
    default: JsonValue = Field(default=None, description="Used when the source value is absent or null")
    value_map: dict[str, JsonValue] | None = Field(
        default=None, description="F&O value → Dataverse value; must be invertible on two-way fields"
    )
    type: TypeConversion | None = None
    scale: int | None = Field(default=None, ge=0, le=10, description="Decimal places for type: decimal")
    text: TextRule | None = None
    lookup: str | None = Field(default=None, description="Name of the map whose row this field references")
    to_dataverse: str | None = Field(default=None, description="Expression over F&O fields giving the Dataverse value")
    to_fno: str | None = Field(default=None, description="Expression over Dataverse columns giving the F&O value")

    @model_validator(mode="after")
    def _names_something(self) -> FieldMap:
        if not self.fno and not self.dataverse:
            raise ValueError("a field needs `fno`, `dataverse`, or both")
        return self

    @property
    def label(self) -> str:
        return f"{self.fno or '∅'} ↔ {self.dataverse or '∅'}"


class ConflictPolicy(StrEnum):
    MASTER = "master"
    LAST_WRITER_WINS = "last_writer_wins"
    MERGE = "merge"
    MANUAL = "manual"


class Conflict(Strict):
    policy: ConflictPolicy = ConflictPolicy.MERGE
    master: Side = Side.FNO


class Filters(Strict):
    fno: str | None = None
    dataverse: str | None = None


class TableMap(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    version: int = Field(default=1, ge=1)
    enabled: bool = True
    dir: Direction = Field(default=Direction.BOTH, description="Default direction of every field")
    fno: FnoEntity
    dataverse: DataverseTable
    company: Company | None = None
    depends_on: list[str] = Field(default_factory=list)
    conflict: Conflict = Field(default_factory=Conflict)
    initial_sync_master: Side = Side.FNO
    delete: Literal["delete", "deactivate", "ignore"] = "delete"
    on_filter_exit: Literal["ignore", "delete"] = Field(
        default="ignore", description="What happens on the other side when a row stops passing the filter"
    )
    filters: Filters = Field(default_factory=Filters)
    fields: list[FieldMap] = Field(min_length=1)

    def direction_of(self, field: FieldMap) -> Direction:
        return field.dir or self.dir

    def flows(self, field: FieldMap, into: Side) -> bool:
        """Whether this field is written into `into` (its direction, and a source to take it from)."""
        direction = self.direction_of(field)
        if direction not in (Direction.BOTH, direction_into(into)):
            return False
        target = field.dataverse if into is Side.DATAVERSE else field.fno
        if not target:
            return False
        source = field.fno if into is Side.DATAVERSE else field.dataverse
        expression = field.to_dataverse if into is Side.DATAVERSE else field.to_fno
        return bool(source or expression or field.default is not None)

    def field_for(self, side: Side, name: str) -> FieldMap | None:
        return next((f for f in self.fields if (f.fno if side is Side.FNO else f.dataverse) == name), None)

    def key(self, side: Side) -> list[str]:
        return self.fno.key if side is Side.FNO else self.dataverse.key

    def company_field(self, side: Side) -> str | None:
        if self.company is None:
            return None
        return self.company.fno if side is Side.FNO else self.company.dataverse

    def readable(self, side: Side) -> set[str]:
        """Every field of `side` this map may read: mapped, key, company and declared extra fields."""
        names = {f.fno if side is Side.FNO else f.dataverse for f in self.fields} - {None}
        extra = self.fno.fields if side is Side.FNO else self.dataverse.fields
        company = self.company_field(side)
        return {n for n in names if n} | set(self.key(side)) | set(extra) | ({company} if company else set())

    @property
    def entity_name(self) -> str:
        return self.fno.entity


class MapFile(Strict):
    """One YAML file: a single map."""

    map: TableMap
