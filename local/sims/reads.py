"""Reads, as strict as the apps: `$select` / `$filter` / `$orderby` naming an unknown property answer 400, the
primary key comes with every `$select`; `$orderby`, `$count`, `$top`, paging with `Preference-Applied`, conditional
GETs (304), `@odata.context`, and annotations through the dialect's `annotate` hook. Generic: the dialect says which
properties a row has (`property_names`) and its types' namespace (`type_namespace`)."""

from __future__ import annotations

from typing import Any

from local.sims.engine import Reply, Request, SimError, Simulator, _not_found
from local.sims.query import FilterError, UnknownName, parse_filter, parse_orderby, sort_rows
from local.sims.schema import Table


def property_names(sim: Simulator, table: Table) -> set[str]:
    """Every property a row of `table` has on the wire: what `$select`, `$filter` and `$orderby` may name."""
    hook = getattr(sim.dialect, "property_names", None)
    return set(hook(table)) if hook is not None else set(table.columns)


def unknown_name(sim: Simulator, table: Table, name: str) -> SimError:
    """Dataverse: 400 `0x80060888` "Could not find a property named …" (the OData library's own words, which F&O
    shares under its own namespace and error body)."""
    namespace = getattr(sim.dialect, "type_namespace", "Microsoft.Dynamics.DataEntities")
    return SimError(400, f"Could not find a property named '{name}' on type '{namespace}.{table.name}'.", "0x80060888")


def _selected(sim: Simulator, table: Table, request: Request) -> list[str] | None:
    text = request.query.get("$select")
    if not text:
        return None
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    names = property_names(sim, table)
    for name in wanted:
        if name not in names:
            raise unknown_name(sim, table, name)
    if table.primary_id and table.primary_id not in wanted:  # the primary key is always returned
        wanted.append(table.primary_id)
    return wanted


def _context(sim: Simulator, table: Table, selected: list[str] | None, entity: bool) -> str:
    shown = f"({','.join(selected)})" if selected else ""
    return f"{sim.base_url}$metadata#{table.entity_set}{shown}" + ("/$entity" if entity else "")


def _shape(sim: Simulator, table: Table, document: dict[str, Any], selected: list[str] | None, request: Request) -> Any:
    document = _select(document, selected)
    annotations = _preference(request, "odata.include-annotations")
    hook = getattr(sim.dialect, "annotate", None)
    if annotations and hook is not None:
        document = hook(table, document, annotations.strip('"'))
    return document


def _applied(sim: Simulator, request: Request, names: tuple[str, ...]) -> dict[str, str]:
    applied = [f"{n}={_preference(request, n)}" for n in names if _preference(request, n)]
    return {"Preference-Applied": ",".join(applied)} if applied else {}


def read_row(sim: Simulator, table: Table, key: dict[str, Any] | str, request: Request) -> Reply:
    selected = _selected(sim, table, request)
    row = sim.dialect.locate(table, key, request)
    if row is None or not sim.dialect.visible(table, row, request):
        raise _not_found(table, key)
    etag = sim.dialect.etag(row)
    if request.headers.get("if-none-match") in (etag, "*"):  # unchanged since the caller's copy
        return Reply(304, None, {"ETag": etag})
    document = {"@odata.context": _context(sim, table, selected, entity=True)} | _shape(
        sim, table, sim.dialect.present(table, row), selected, request
    )
    headers = {"ETag": etag} | _applied(sim, request, ("odata.include-annotations",))
    return Reply(200, document, headers)


def read_rows(sim: Simulator, table: Table, request: Request) -> Reply:
    if sim.dialect.name == "dataverse" and _preference(request, "odata.track-changes") is not None:
        return _tracked(sim, table, request)
    selected = _selected(sim, table, request)
    names = property_names(sim, table)
    predicate = None
    if text := request.query.get("$filter"):
        try:
            predicate = parse_filter(text, names=names)
        except UnknownName as exc:
            raise unknown_name(sim, table, exc.name) from None
        except FilterError as exc:
            raise SimError(400, f"Invalid $filter: {exc}", "0x80060888") from None
    order = []
    if text := request.query.get("$orderby"):
        try:
            order = parse_orderby(text, names)
        except UnknownName as exc:
            raise unknown_name(sim, table, exc.name) from None
        except FilterError as exc:
            raise SimError(400, f"Invalid $orderby: {exc}", "0x80060888") from None
    if predicate is None and not order and _all_visible(sim, request):
        return _read_page(sim, table, request, selected)
    q = request.query
    scope = (table.entity_set, q.get("cross-company"), request.user)  # what decides which rows a caller sees
    cached = (*scope, q.get("$filter"), q.get("$orderby"))
    version = sim.store.version()
    documents = sim.query_cache.get((*cached, version))
    if documents is None:
        # Every row the caller sees, presented, is shared by the queries that differ only in $filter/$orderby: a
        # bulk read of each company in turn (`$filter=dataAreaId eq '…'`) loaded the whole table once per company.
        seen = sim.query_cache.get((*scope, version))
        if seen is None:
            rows = [r for r in sim.store.all(table.entity_set) if sim.dialect.visible(table, r, request)]
            seen = [sim.dialect.present(table, r) for r in rows]
            _remember(sim, (*scope, version), seen)
        documents = [d for d in seen if predicate(d)] if predicate is not None else seen
        documents = sort_rows(documents, order)  # (a new list: the shared one keeps its order)
        _remember(sim, (*cached, version), documents)
    if "$skip" in request.query and not getattr(sim.dialect, "supports_skip", True):
        raise SimError(400, "The query parameter $skip is not supported.", "0x80060888")
    skip = int(request.query.get("$skiptoken") or request.query.get("$skip") or 0)
    top = request.query.get("$top")
    page = _preference(request, "odata.maxpagesize")
    size = _page_size(sim, request)
    end = len(documents) if top is None else min(len(documents), skip + int(top))
    chunk = documents[skip : min(end, skip + size)]
    body: dict[str, Any] = {"@odata.context": _context(sim, table, selected, entity=False)}
    if request.query.get("$count", "").lower() == "true":
        # OData: the count of every matching row, whatever $top says; Dataverse counts up to 5,000
        body["@odata.count"] = min(len(documents), 5000)
    body["value"] = [_shape(sim, table, d, selected, request) for d in chunk]
    if skip + size < end:
        query = {k: v for k, v in request.query.items() if k not in ("$skiptoken", "$skip")}
        query["$skiptoken"] = str(skip + size)
        body["@odata.nextLink"] = sim._link(table.entity_set, query)
    applied = ("odata.maxpagesize",) if page and page.isdigit() and size == int(page) else ()
    return Reply(200, body, _applied(sim, request, (*applied, "odata.include-annotations")))


def _remember(sim: Simulator, key: tuple[Any, ...], documents: list[dict[str, Any]]) -> None:
    if len(sim.query_cache) >= 16:
        sim.query_cache.clear()
    sim.query_cache[key] = documents


_NOT_WITH_TRACKING = ("$filter", "$orderby", "$expand", "$top", "$skip", "$apply")


def _tracked(sim: Simulator, table: Table, request: Request) -> Reply:
    """Change tracking — Microsoft Learn, "Use change tracking to synchronize data with external systems": with
    `Prefer: odata.track-changes` a read answers every row and, on its last page, `@odata.deltaLink`
    (`…?$deltatoken=<token>`); GET that link later for the rows changed since (created or updated) and the deleted
    ones as `{"@odata.context": "…$deletedEntity", "id", "reason": "deleted"}`, with a new delta link. `$filter`,
    `$orderby`, `$expand` and `$top` are refused with it. Pages as any query; the token of a paged answer is taken
    at its first page, so a change made while paging is in the next delta."""
    refused = [o for o in _NOT_WITH_TRACKING if o in request.query]
    if refused:
        raise SimError(400, f"{refused[0]} is not supported with change tracking (odata.track-changes).", "0x80060888")
    selected = _selected(sim, table, request)
    skip_text, _, as_of_text = request.query.get("$skiptoken", "").partition(":")
    as_of = int(as_of_text) if as_of_text.isdigit() else sim.store.version()
    token = request.query.get("$deltatoken")
    gone: list[str]
    if token is None:
        rows, gone = sim.store.all(table.entity_set), []
    else:
        since = token.split("!", 1)[0]
        if not since.isdigit():
            raise SimError(400, f"The delta token '{token}' is not valid.", "0x80060888")
        rows, gone = sim.store.changed_since(table.entity_set, int(since))
        gone = [g for g in gone if sim.store.get(table.entity_set, g) is None]  # deleted, not re-created
    rows = [r for r in rows if r.version <= as_of]
    context = _context(sim, table, selected, entity=False)
    documents: list[dict[str, Any]] = [
        _shape(sim, table, sim.dialect.present(table, r), selected, request) for r in rows
    ]
    documents += [{"@odata.context": f"{sim.base_url}$metadata#{table.entity_set}/$deletedEntity", "id": g,
                   "reason": "deleted"} for g in gone]  # fmt: skip
    skip = int(skip_text) if skip_text.isdigit() else 0
    size = _page_size(sim, request)
    body: dict[str, Any] = {"@odata.context": context, "value": documents[skip : skip + size]}
    query = {k: v for k, v in request.query.items() if k not in ("$skiptoken", "$deltatoken")}
    if skip + size < len(documents):
        body["@odata.nextLink"] = sim._link(table.entity_set, query | ({"$deltatoken": token} if token else {})
                                            | {"$skiptoken": f"{skip + size}:{as_of}"})  # fmt: skip
    else:
        body["@odata.deltaLink"] = sim._link(table.entity_set, query | {"$deltatoken": f"{as_of}!{_now()}"})
    return Reply(200, body, {"Preference-Applied": "odata.track-changes"})


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%m/%d/%Y %H:%M:%S")


def _all_visible(sim: Simulator, request: Request) -> bool:
    return sim.dialect.name == "dataverse" or request.query.get("cross-company", "").lower() == "true"


def _page_size(sim: Simulator, request: Request) -> int:
    """Dataverse pages hold at most 5,000 rows ("Page results"), F&O's server-driven pages 10,000; a larger
    `odata.maxpagesize` is ignored."""
    largest = 10_000 if sim.dialect.name == "fno" else 5000
    page = _preference(request, "odata.maxpagesize")
    return int(page) if page and page.isdigit() and 0 < int(page) <= largest else largest


def _read_page(sim: Simulator, table: Table, request: Request, selected: list[str] | None) -> Reply:
    """An unfiltered, unordered read: one page from storage, not the whole table sorted and cut on every page (a
    bulk read of 100,000 rows would otherwise cost the square of its pages)."""
    if "$skip" in request.query and not getattr(sim.dialect, "supports_skip", True):
        raise SimError(400, "The query parameter $skip is not supported.", "0x80060888")
    skip = int(request.query.get("$skiptoken") or request.query.get("$skip") or 0)
    top = request.query.get("$top")
    size = _page_size(sim, request)
    total = sim.store.count(table.entity_set)
    end = total if top is None else min(total, skip + int(top))
    rows = sim.store.page(table.entity_set, skip, max(0, min(end, skip + size) - skip))
    body: dict[str, Any] = {"@odata.context": _context(sim, table, selected, entity=False)}
    if request.query.get("$count", "").lower() == "true":
        body["@odata.count"] = min(total, 5000)
    body["value"] = [_shape(sim, table, sim.dialect.present(table, r), selected, request) for r in rows]
    if skip + size < end:
        query = {k: v for k, v in request.query.items() if k not in ("$skiptoken", "$skip")}
        query["$skiptoken"] = str(skip + size)
        body["@odata.nextLink"] = sim._link(table.entity_set, query)
    page = _preference(request, "odata.maxpagesize")
    applied = ("odata.maxpagesize",) if page and page.isdigit() and size == int(page) else ()
    return Reply(200, body, _applied(sim, request, (*applied, "odata.include-annotations")))


def _select(document: dict[str, Any], selected: list[str] | None) -> dict[str, Any]:
    if not selected:
        return document
    wanted = set(selected)
    return {k: v for k, v in document.items() if k in wanted or k.startswith("@odata.")}


def _preference(request: Request, name: str) -> str | None:
    """The value of one `Prefer` preference (`odata.maxpagesize=50` → "50"; a bare one → "")."""
    for part in request.headers.get("prefer", "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == name:
            return value.strip()
    return None
