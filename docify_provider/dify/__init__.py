"""The Dify Workflow Service API backend's wire layer: no Airflow imports.

``DifyClient`` / ``AsyncDifyClient`` (``client``), models (``models``), input validation and file
mappings (``inputs``), errors (``errors``) and configuration (``config``), on the shared core in
``docify_provider._core``.
"""
