"""The sync engine: everything but the triggers. Never imports azure.functions."""
