"""The Functions app: registers the blueprints from `functions/`, nothing else."""

import azure.functions as func

from functions import admin, apply, webhooks
from shared.bridge import close_bridge

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(admin.bp)
app.register_functions(webhooks.bp)
app.register_functions(apply.bp)


async def shutdown() -> None:
    """Awaited by the local dev host when it stops (see local/host/__main__.py): close what the bridge opened."""
    await close_bridge()
