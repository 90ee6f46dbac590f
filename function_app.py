"""The Functions app: registers the blueprints from `functions/`, nothing else."""

import azure.functions as func

from functions import admin, apply, console_page, notify, ops, ops_watch, sync, webhooks
from shared.bridge import close_bridge
from shared.ops.telemetry import configure

configure()  # Application Insights through OpenTelemetry, only when APPLICATIONINSIGHTS_CONNECTION_STRING is set

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(admin.bp)
app.register_functions(ops.bp)
app.register_functions(ops_watch.bp)
app.register_functions(console_page.bp)
app.register_functions(webhooks.bp)
app.register_functions(apply.bp)
app.register_functions(notify.bp)
app.register_functions(sync.bp)


async def shutdown() -> None:
    """Awaited by the local dev host when it stops (see local/host/__main__.py): the console's figures and waiting
    list flushed first, then what the bridge opened closed."""
    from shared.ops.wiring import drain

    try:
        await drain()
    finally:
        await close_bridge()
