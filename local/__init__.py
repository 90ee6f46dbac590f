"""The local stack: never deployed (see .funcignore). `python -m local` starts it all."""
