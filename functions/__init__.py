"""Triggers only: each handler parses its input, calls one service in `shared`, and answers."""
