"""What every backend shares on the wire: no Airflow imports, nothing backend-specific.

``errors`` (one root, one class per decision), ``config`` (a client's settings and the key that
never shows itself), ``http_errors`` (answers and transport failures -> typed errors),
``retries`` (when a request may be repeated), ``sse`` (bounded event text for httpx-sse),
``files`` (upload sources streamed, names made safe) and ``transport`` (the httpx clients, sync
and async: the sans-IO half in ``transport_base``, the I/O written once in ``_async/`` and
generated into ``_sync/`` by ``scripts/unasync.py``, with ``concurrency`` as the seam). A
backend (``docify_provider.docify`` for Docify, ``docify_provider.dify`` for Dify) adds its
operations, models, error classes and stream verdict on top.
"""
