"""Change notifications from both apps, normalized into one `ChangeEvent` (pure: no I/O)."""
