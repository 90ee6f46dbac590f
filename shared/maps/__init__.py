"""Table maps: models, loading and validation, the expression language, transforms; `python -m shared.maps`."""
