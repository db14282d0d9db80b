"""Apache Airflow provider for Docify AI scenarios and Dify apps (the Service API and the account API)."""

# The distribution's version, as in pyproject.toml and CHANGELOG.md (tests/packaging/test_versions.py).
__version__ = "0.6.0"
