"""Ingest: notifications in, normalized changes onto the bus."""
