"""Batch runs: many documents in one task, each bought once (issue 20). No Airflow.

* ``items`` - the per-item ledger (intent -> started with run id -> bought), kept compactly in
  shards of a key-value store, with each item's result in a separate result store;
* ``backends`` - what differs per backend: how an item's run is sent, re-attached and read;
* ``runner`` - ``BatchRunner``: items through the admission limiter (``_core.admission``) and the
  one run policy (``durable.policy.decide``, per item), results in input order, progress lines.

Layer: above ``durable`` (it uses the run policy) and the backend packages, below ``hooks`` (it
gets clients from a factory and never reads a connection), so the batch trigger and the batch
operators (on the worker) drive the same engine.
"""

from docify_provider.batch.items import ItemLedger, MemoryKV, MemoryResults
from docify_provider.batch.runner import BatchResult, BatchRunner, Progress

__all__ = ["BatchResult", "BatchRunner", "ItemLedger", "MemoryKV", "MemoryResults", "Progress"]
