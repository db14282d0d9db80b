"""Command-line tools: ``airflow-dify`` (console script) and ``airflow dify ...`` (Airflow 3.2+)."""
