"""One file per schema revision; write new ones with `python -m db.migrate revision -m "..."`."""
