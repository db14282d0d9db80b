"""Apache Airflow provider for Docify AI scenarios."""

__version__ = "0.1.0"
