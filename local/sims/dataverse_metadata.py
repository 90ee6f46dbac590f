"""What Dataverse publishes about its tables, derived from the simulator's live schema: `$metadata` (CSDL),
`EntityDefinitions` (with `Attributes`, `Keys`, attribute casts and `OptionSet`) and `WhoAmI`, in the shapes
Microsoft Learn documents ("Query table definitions using the Web API", "Web API EntityMetadata / AttributeMetadata /
EntityKeyMetadata EntityType", "WhoAmI Function", "CSDL $metadata document").

Everything here is pure: a table in, JSON (or XML) out. `DataverseDialect.service` routes the requests.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree

from local.sims.query import FilterError, UnknownName, parse_filter
from local.sims.schema import ColumnType, Table

CRM = "Microsoft.Dynamics.CRM"
_KEY = re.compile(r"^\((?:LogicalName=)?'?(?P<name>[^')]+)'?\)")

# (@odata.type, AttributeType, AttributeTypeName) per column type
_TYPES: dict[ColumnType, tuple[str, str, str]] = {
    ColumnType.TEXT: ("StringAttributeMetadata", "String", "StringType"),
    ColumnType.MEMO: ("MemoAttributeMetadata", "Memo", "MemoType"),
    ColumnType.NUMBER: ("IntegerAttributeMetadata", "Integer", "IntegerType"),
    ColumnType.DECIMAL: ("DecimalAttributeMetadata", "Decimal", "DecimalType"),
    ColumnType.BOOLEAN: ("BooleanAttributeMetadata", "Boolean", "BooleanType"),
    ColumnType.CHOICE: ("PicklistAttributeMetadata", "Picklist", "PicklistType"),
    ColumnType.DATETIME: ("DateTimeAttributeMetadata", "DateTime", "DateTimeType"),
    ColumnType.DATE: ("DateTimeAttributeMetadata", "DateTime", "DateTimeType"),
    ColumnType.LOOKUP: ("LookupAttributeMetadata", "Lookup", "LookupType"),
    ColumnType.GUID: ("UniqueidentifierAttributeMetadata", "Uniqueidentifier", "UniqueidentifierType"),
}
_EDM = {
    ColumnType.TEXT: "Edm.String",
    ColumnType.MEMO: "Edm.String",
    ColumnType.NUMBER: "Edm.Int32",
    ColumnType.DECIMAL: "Edm.Decimal",
    ColumnType.BOOLEAN: "Edm.Boolean",
    ColumnType.CHOICE: "Edm.Int32",
    ColumnType.DATETIME: "Edm.DateTimeOffset",
    ColumnType.DATE: "Edm.Date",
    ColumnType.LOOKUP: "Edm.Guid",
    ColumnType.GUID: "Edm.Guid",
}


_OPTION_SET_TYPES = frozenset(
    {"PicklistAttributeMetadata", "MultiSelectPicklistAttributeMetadata", "StateAttributeMetadata",
     "StatusAttributeMetadata", "BooleanAttributeMetadata", "EnumAttributeMetadata"}
)  # fmt: skip


def _no_property(name: str, kind: str) -> str:
    return f"Could not find a property named '{name}' on type '{CRM}.{kind}'."


class MetadataError(Exception):
    def __init__(self, status: int, message: str, code: str = "0x80060888") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def metadata_id(*parts: str) -> str:
    """Stable ids: the same definition always has the same MetadataId."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "dataverse-metadata:" + ":".join(parts)))


def _schema_name(logical: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in logical.split("_")) if not logical.startswith("msdyn_") else logical


def _label(text: str) -> dict[str, Any]:
    localized = {"Label": text, "LanguageCode": 1033, "IsManaged": True}
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def _attribute(table: Table, tables: Mapping[str, Table], name: str, kind: ColumnType, **extra: Any) -> dict[str, Any]:
    odata_type, attribute_type, type_name = _TYPES[kind]
    column = table.column(name)
    if name in ("statecode", "statuscode") and kind is ColumnType.CHOICE:
        odata_type, attribute_type, type_name = (
            ("StateAttributeMetadata", "State", "StateType")
            if name == "statecode"
            else ("StatusAttributeMetadata", "Status", "StatusType")
        )
    document: dict[str, Any] = {
        "@odata.type": f"#{CRM}.{odata_type}",
        "MetadataId": metadata_id(table.name, name),
        "LogicalName": name,
        "SchemaName": _schema_name(name),
        "EntityLogicalName": table.name,
        "AttributeType": attribute_type,
        "AttributeTypeName": {"Value": type_name},
        "DisplayName": _label(name),
        "IsPrimaryId": name == table.primary_id,
        "IsPrimaryName": name == table.primary_name,
        "IsCustomAttribute": name.startswith(("msdyn_", "cdm_", "sync_")),
        "IsValidForCreate": name not in ("createdon", "modifiedon", "versionnumber"),
        "IsValidForUpdate": name not in ("createdon", "modifiedon", "versionnumber", table.primary_id),
        "IsValidForRead": True,
        "RequiredLevel": {"Value": "SystemRequired" if name == table.primary_id else "None"},
        "ExternalName": column.external_name if column is not None else None,  # a virtual table's F&O field
    }
    if kind in (ColumnType.TEXT, ColumnType.MEMO) and column is not None:
        document["MaxLength"] = column.max_length
        document["Format"] = "Text" if kind is ColumnType.TEXT else "TextArea"
    if kind is ColumnType.DATE:
        document["Format"] = "DateOnly"
    elif kind is ColumnType.DATETIME:
        document["Format"] = "DateAndTime"
    if kind is ColumnType.DECIMAL:
        document |= {"Precision": 2, "MinValue": -100000000000, "MaxValue": 100000000000}
    if kind is ColumnType.NUMBER:
        document |= {"MinValue": -2147483648, "MaxValue": 2147483647, "Format": "None"}
    if kind is ColumnType.LOOKUP and column is not None:
        targets = column.navigation_properties().values()
        document["Targets"] = [tables[t].name if t in tables else t.rstrip("s") for t in targets]
        if column.navigation and all(t in ("accounts", "contacts") for t in targets):
            document["AttributeType"], document["AttributeTypeName"] = "Customer", {"Value": "CustomerType"}
    return document | extra


def attributes(table: Table, tables: Mapping[str, Table]) -> list[dict[str, Any]]:
    """Every attribute of the table: its columns, the primary key and the system columns every table has."""
    out = []
    if table.primary_id:
        out.append(_attribute(table, tables, table.primary_id, ColumnType.GUID))
    for column in table.columns.values():
        out.append(_attribute(table, tables, column.name, column.type))
    if not table.system:
        for name in ("createdon", "modifiedon"):
            out.append(_attribute(table, tables, name, ColumnType.DATETIME))
        out.append(
            _attribute(
                table, tables, "versionnumber", ColumnType.NUMBER,
                **{"@odata.type": f"#{CRM}.BigIntAttributeMetadata", "AttributeType": "BigInt",
                   "AttributeTypeName": {"Value": "BigIntType"}},
            )
        )  # fmt: skip
    return out


def option_set(table: Table, name: str) -> dict[str, Any]:
    column = table.columns[name]
    if column.type is ColumnType.BOOLEAN:
        return {
            "MetadataId": metadata_id(table.name, name, "optionset"),
            "Name": f"{table.name}_{name}",
            "OptionSetType": "Boolean",
            "IsGlobal": False,
            "TrueOption": {"Value": 1, "Label": _label("Yes")},
            "FalseOption": {"Value": 0, "Label": _label("No")},
        }
    kind = {"statecode": "State", "statuscode": "Status"}.get(name, "Picklist")
    return {
        "MetadataId": metadata_id(table.name, name, "optionset"),
        "Name": column.enum or f"{table.name}_{name}",
        "OptionSetType": kind,
        "IsGlobal": column.enum is not None,
        "Options": [
            {
                "Value": value,
                "Label": _label(column.labels.get(value, str(value))),
                "Color": None,
                # "OptionMetadata ComplexType": the value's name in an external source — on a virtual table, the
                # F&O enum symbol ("Entity modeling"); null for Dataverse's own options.
                "ExternalValue": column.external_values.get(value),
            }
            for value in column.options
        ],
    }


def keys(table: Table) -> list[dict[str, Any]]:
    """The alternate key, as EntityKeyMetadata: `KeyAttributes` are attribute logical names (a lookup by its own
    name, not its `_x_value` property)."""
    if table.system or not table.key:
        return []
    name = f"{table.name}_{'_'.join(table.key)}_key"
    return [
        {
            "MetadataId": metadata_id(table.name, "key", *table.key),
            "LogicalName": name,
            "SchemaName": name,
            "DisplayName": _label(", ".join(table.key)),
            "EntityLogicalName": table.name,
            "KeyAttributes": list(table.key),
            "EntityKeyIndexStatus": "Active",
            "IsManaged": True,
            "IsCustomizable": {"Value": True, "CanBeChanged": True, "ManagedPropertyLogicalName": "iscustomizable"},
        }
    ]


def entity(table: Table, external: str | None = None) -> dict[str, Any]:
    """`external`: a virtual table's F&O entity (its rows live there)."""
    return {
        "MetadataId": metadata_id(table.name),
        "LogicalName": table.name,
        "SchemaName": _schema_name(table.name),
        "EntitySetName": table.entity_set,
        "LogicalCollectionName": table.entity_set,
        "CollectionSchemaName": _schema_name(table.entity_set),
        "PrimaryIdAttribute": table.primary_id,
        "PrimaryNameAttribute": table.primary_name,
        "DisplayName": _label(table.name),
        "IsCustomEntity": table.name.startswith(("msdyn_", "cdm_", "sync_")),
        "IsPrivate": False,
        "IsActivity": False,
        "IsIntersect": False,
        "ChangeTrackingEnabled": True,
        "ObjectTypeCode": int(uuid.UUID(metadata_id(table.name)).int % 9000 + 10000),
        "OwnershipType": "UserOwned" if not table.system else "OrganizationOwned",
        "TableType": "Virtual" if external else "Standard",
        "ExternalName": external,
        "ExternalCollectionName": external,
    }


# --- requests -------------------------------------------------------------------------------------------------------


def _split(text: str) -> list[str]:
    """Top-level comma split: `Attributes($select=a,b),Keys` → ['Attributes($select=a,b)', 'Keys']."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += (ch == "(") - (ch == ")")
        current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def _options(text: str) -> dict[str, str]:
    """`$select=a,b;$expand=OptionSet` → {"$select": "a,b", "$expand": "OptionSet"}."""
    out = {}
    for part in re.split(r";(?![^(]*\))", text):
        name, _, value = part.partition("=")
        if name.strip():
            out[name.strip()] = value.strip()
    return out


def _select(
    document: dict[str, Any], select: str | None, kept: tuple[str, ...] = (), kind: str = "EntityMetadata"
) -> dict[str, Any]:
    if not select:
        return document
    wanted = [s.strip() for s in select.split(",") if s.strip()]
    for name in wanted:
        if name not in document and name not in kept:
            raise MetadataError(400, f"Could not find a property named '{name}' on type '{CRM}.{kind}'.")
    always = ("@odata.type", "MetadataId")
    return {k: v for k, v in document.items() if k in wanted or k in always or k in kept}


def _filter(documents: list[dict[str, Any]], text: str | None, kind: str) -> list[dict[str, Any]]:
    if not text:
        return documents
    names = set().union(*(d.keys() for d in documents)) if documents else set()
    try:
        predicate = parse_filter(text, names=names)
    except UnknownName as exc:
        raise MetadataError(400, f"Could not find a property named '{exc.name}' on type '{CRM}.{kind}'.") from None
    except FilterError as exc:
        raise MetadataError(400, f"Invalid $filter: {exc}") from None
    return [d for d in documents if predicate(d)]


class Definitions:
    """`EntityDefinitions…` requests over the live tables."""

    def __init__(self, tables: Mapping[str, Table], base: str, virtual: Mapping[str, Table] | None = None) -> None:
        """`virtual`: F&O entity → its virtual table (`local.sims.virtual_tables`), defined here, served by F&O."""
        self.external = {t.name: entity for entity, t in (virtual or {}).items()}
        self.tables = {t.name: t for t in [*tables.values(), *(virtual or {}).values()]}
        self.by_set = dict(tables)
        self.base = base

    def _definition(self, table: Table) -> dict[str, Any]:
        return entity(table, self.external.get(table.name))

    def _table(self, selector: str) -> Table:
        text = selector.strip("()")
        if text.startswith("LogicalName="):
            name = text.split("=", 1)[1].strip("'")
            found = self.tables.get(name)
        else:
            found = next((t for t in self.tables.values() if metadata_id(t.name) == text.lower()), None)
        if found is None:
            raise MetadataError(404, f"Could not find entity with logical name or metadata id {text}.", "0x80040217")
        return found

    def _entity(self, table: Table, query: Mapping[str, str]) -> dict[str, Any]:
        expands = {}
        for part in _split(query.get("$expand", "")):
            name, _, rest = part.partition("(")
            expands[name.strip()] = _options(rest[:-1]) if rest else {}
        unknown = set(expands) - {"Attributes", "Keys"}
        if unknown:
            raise MetadataError(
                400, f"Could not find a property named '{sorted(unknown)[0]}' on type '{CRM}.EntityMetadata'."
            )
        document = _select(self._definition(table), query.get("$select"), kept=tuple(expands))
        if "Attributes" in expands:
            o = expands["Attributes"]
            if "$expand" in o:  # OptionSet is no property of AttributeMetadata: expanded only through a cast
                raise MetadataError(400, _no_property(o["$expand"].partition("(")[0], "AttributeMetadata"))
            found = _filter(attributes(table, self.by_set), o.get("$filter"), "AttributeMetadata")
            document["Attributes"] = [_select(a, o.get("$select"), kind="AttributeMetadata") for a in found]
        if "Keys" in expands:
            o = expands["Keys"]
            document["Keys"] = [_select(k, o.get("$select"), kind="EntityKeyMetadata") for k in keys(table)]
        return document

    def serve(self, path: str, query: Mapping[str, str]) -> dict[str, Any]:
        rest = path[len("EntityDefinitions") :]
        context = f"{self.base}$metadata#EntityDefinitions"
        if not rest:
            documents = [self._definition(t) for t in self.tables.values()]
            chosen = {d["LogicalName"] for d in _filter(documents, query.get("$filter"), "EntityMetadata")}
            return {
                "@odata.context": context,
                "value": [self._entity(self.tables[n], query) for n in sorted(chosen)],
            }
        match = re.match(r"^(\([^)]*\))(.*)$", rest)
        if match is None:
            raise MetadataError(404, f"Resource not found for the segment '{path}'.", "0x8006088a")
        table, tail = self._table(match.group(1)), match.group(2)
        if not tail:
            return {"@odata.context": f"{context}/$entity"} | self._entity(table, query)
        if tail == "/Keys":
            return {"@odata.context": f"{context}({table.name})/Keys", "value": keys(table)}
        attribute_path = re.match(
            r"^/Attributes(?:\((?:LogicalName=)?'?([^')]+)'?\))?(?:/Microsoft\.Dynamics\.CRM\.(\w+))?$", tail
        )
        if attribute_path is None:
            raise MetadataError(404, f"Resource not found for the segment '{tail.lstrip('/')}'.", "0x8006088a")
        single, cast = attribute_path.group(1), attribute_path.group(2)
        found = attributes(table, self.by_set)
        if cast:
            found = [a for a in found if a["@odata.type"] == f"#{CRM}.{cast}"]
        if single:
            found = [a for a in found if a["LogicalName"] == single or a["MetadataId"] == single.lower()]
            if not found:
                raise MetadataError(404, f"Could not find attribute {single} of {table.name}.", "0x80040217")
        found = _filter(found, query.get("$filter"), "AttributeMetadata")
        kind = cast or "AttributeMetadata"
        for part in _split(query.get("$expand", "")):
            name, _, rest_options = part.partition("(")
            name = name.strip()
            # OptionSet and GlobalOptionSet are navigation properties of the option-set attribute types only:
            # without such a cast (or with another) they are no property at all, as OData answers.
            if name not in ("OptionSet", "GlobalOptionSet") or kind not in _OPTION_SET_TYPES:
                raise MetadataError(400, _no_property(name, kind))
            options = _options(rest_options[:-1]) if rest_options else {}
            for a in found:
                column = table.columns.get(a["LogicalName"])
                if column is None or column.type not in (ColumnType.CHOICE, ColumnType.BOOLEAN):
                    continue
                definition = option_set(table, a["LogicalName"])
                # "Retrieve table definitions by name or MetadataId": a local option set is in OptionSet and
                # GlobalOptionSet is null; an attribute using a global option set has it in GlobalOptionSet, and
                # OptionSet is null.
                wanted = "GlobalOptionSet" if definition["IsGlobal"] else "OptionSet"
                a[name] = (
                    _select(definition, options.get("$select"), kind="OptionSetMetadata") if name == wanted else None
                )
        found = [_select(a, query.get("$select"), ("OptionSet", "GlobalOptionSet"), kind) for a in found]
        shown = f"{context}({table.name})/Attributes" + (f"/{CRM}.{cast}" if cast else "")
        if single:
            return {"@odata.context": f"{shown}/$entity"} | found[0]
        return {"@odata.context": shown, "value": found}


def csdl(tables: Mapping[str, Table]) -> str:
    """The `$metadata` CSDL document: an EntityType per table (key, properties, lookup navigation properties) and
    an EntitySet per type, in the `Microsoft.Dynamics.CRM` namespace, plus the WhoAmI function."""
    edmx = "http://docs.oasis-open.org/odata/ns/edmx"
    edm = "http://docs.oasis-open.org/odata/ns/edm"
    ElementTree.register_namespace("edmx", edmx)
    root = ElementTree.Element(f"{{{edmx}}}Edmx", {"Version": "4.0"})
    services = ElementTree.SubElement(root, f"{{{edmx}}}DataServices")
    schema = ElementTree.SubElement(services, f"{{{edm}}}Schema", {"Namespace": CRM, "Alias": "mscrm"})
    container = ElementTree.Element(f"{{{edm}}}EntityContainer", {"Name": "System"})
    for table in tables.values():
        entity_type = ElementTree.SubElement(schema, f"{{{edm}}}EntityType", {"Name": table.name})
        if table.primary_id:
            key = ElementTree.SubElement(entity_type, f"{{{edm}}}Key")
            ElementTree.SubElement(key, f"{{{edm}}}PropertyRef", {"Name": table.primary_id})
            ElementTree.SubElement(entity_type, f"{{{edm}}}Property", {"Name": table.primary_id, "Type": "Edm.Guid"})
        for column in table.columns.values():
            attrs = {"Name": column.lookup_property, "Type": _EDM[column.type]}
            if column.type in (ColumnType.TEXT, ColumnType.MEMO) and column.max_length:
                attrs["MaxLength"] = str(column.max_length)
            ElementTree.SubElement(entity_type, f"{{{edm}}}Property", attrs)
        for name, kind in (("versionnumber", "Edm.Int64"), ("createdon", "Edm.DateTimeOffset"),
                           ("modifiedon", "Edm.DateTimeOffset")):  # fmt: skip
            ElementTree.SubElement(entity_type, f"{{{edm}}}Property", {"Name": name, "Type": kind})
        for column in table.columns.values():
            for navigation, target in column.navigation_properties().items():
                target_table = tables.get(target)
                ElementTree.SubElement(
                    entity_type,
                    f"{{{edm}}}NavigationProperty",
                    {"Name": navigation, "Type": f"{CRM}.{target_table.name if target_table else 'crmbaseentity'}"},
                )
        ElementTree.SubElement(
            container, f"{{{edm}}}EntitySet", {"Name": table.entity_set, "EntityType": f"{CRM}.{table.name}"}
        )
    whoami = ElementTree.SubElement(schema, f"{{{edm}}}ComplexType", {"Name": "WhoAmIResponse"})
    for name in ("BusinessUnitId", "UserId", "OrganizationId"):
        ElementTree.SubElement(whoami, f"{{{edm}}}Property", {"Name": name, "Type": "Edm.Guid", "Nullable": "false"})
    function = ElementTree.SubElement(schema, f"{{{edm}}}Function", {"Name": "WhoAmI"})
    ElementTree.SubElement(function, f"{{{edm}}}ReturnType", {"Type": f"{CRM}.WhoAmIResponse", "Nullable": "false"})
    ElementTree.SubElement(container, f"{{{edm}}}FunctionImport", {"Name": "WhoAmI", "Function": f"{CRM}.WhoAmI"})
    schema.append(container)
    return '<?xml version="1.0" encoding="utf-8"?>' + ElementTree.tostring(root, encoding="unicode")
