"""The I/O half of the shared transport: ``_async`` is written by hand, ``_sync`` generated from it
by ``scripts/unasync.py``."""
