"""The Functions app: registers the blueprints from `functions/`, nothing else."""

import azure.functions as func

from functions import admin, apply, sync, webhooks

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(admin.bp)
app.register_functions(webhooks.bp)
app.register_functions(apply.bp)
app.register_functions(sync.bp)
