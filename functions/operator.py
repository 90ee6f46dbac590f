"""Who may read and act on the operator's endpoints (console, status, maps, errors, conflicts, dead letters).

Locally (`OPERATOR_AUTH=key`, the default) they are ADMIN functions: the master key, checked by the host. In Azure
(`OPERATOR_AUTH=entra`, set by the Bicep) App Service Authentication signs the operator in before a request reaches
the app, so the functions are anonymous to the Functions host and check the signed-in principal's app role here; the
webhooks and health are excluded from App Service Authentication and keep their function keys.
"""

from __future__ import annotations

import os

import azure.functions as func

from functions.http import problem
from shared.ops.auth import Operator, operator

# Decorators run at import, before settings are read anywhere else: the environment decides.
ENTRA = os.environ.get("OPERATOR_AUTH", "key").strip().lower() == "entra"
OPERATOR_LEVEL = func.AuthLevel.ANONYMOUS if ENTRA else func.AuthLevel.ADMIN


def signed_in(req: func.HttpRequest) -> Operator | func.HttpResponse:
    """The acting operator, or the 401/403 to answer (no data)."""
    # Read apart from the other ops settings: a malformed ALERT_RULES must not lock the operators out.
    role = os.environ.get("OPERATOR_ROLE") or "Bridge.Operator"
    who = operator(dict(req.headers), "entra" if ENTRA else "key", role)
    if who.allowed:
        return who
    if not who.name:
        return problem(401, "Unauthorized", who.why)
    return problem(403, "Forbidden", who.why)
