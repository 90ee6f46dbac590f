"""Functions route templates (`items/{id}`, `{id:int}`, `{id?}`, `{*rest}`) matched against request paths."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
}
_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+))?(\?)?\}")


class RouteTemplateError(ValueError):
    pass


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str]
    literal_length: int  # more literal text = more specific, tried first (as ASP.NET routing does)

    def match(self, path: str) -> dict[str, str] | None:
        m = self.pattern.fullmatch(path.strip("/"))
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}


def compile_route(template: str) -> RouteTemplate:
    parts: list[str] = []
    literal = 0
    segments = [s for s in template.strip("/").split("/") if s]
    for index, segment in enumerate(segments):
        regex = ""
        pos = 0
        optional_segment = False
        for m in _PARAM.finditer(segment):
            regex += re.escape(segment[pos : m.start()])
            literal += m.start() - pos
            catch_all, name, constraint, optional = m.groups()
            if constraint and constraint.lower() not in _CONSTRAINTS:
                raise RouteTemplateError(f"unknown route constraint {constraint!r} in {template!r}")
            inner = ".*" if catch_all else _CONSTRAINTS.get((constraint or "").lower(), r"[^/]+")
            regex += f"(?P<{name}>{inner})"
            if optional or catch_all:
                optional_segment = m.start() == 0 and m.end() == len(segment)
            pos = m.end()
        regex += re.escape(segment[pos:])
        literal += len(segment) - pos
        sep = "/" if index else ""
        parts.append(f"(?:{sep}{regex})?" if optional_segment else f"{sep}{regex}")
    return RouteTemplate(template, re.compile("".join(parts)), literal)
