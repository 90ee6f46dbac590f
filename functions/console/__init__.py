"""The console page: one HTML file, a client of the operator's JSON API (`functions/ops.py`)."""
