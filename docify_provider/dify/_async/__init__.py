"""The I/O half of the clients: ``_async`` is written by hand, ``_sync`` generated from it by
``scripts/unasync.py``."""
