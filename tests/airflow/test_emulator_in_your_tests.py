"""A test of your own with the bundled emulator: docs/emulator.md shows this file whole.

conftest.py enables the fixtures with ``pytest_plugins = ["docify_provider.testing.pytest_plugin"]``.
"""

import json

from docify_provider.hooks.docify import DocifyHook
from docify_provider.testing import INVOICE_KEY, Fault
from docify_provider.testing.samples import make_sample_invoices


def test_a_rate_limited_upload_is_retried_and_the_run_bought_once(docify_emulator, tmp_path, monkeypatch):
    # The connection your DAG uses, pointed at the emulator the fixture started for this test.
    conn = {"conn_type": "docify", "host": docify_emulator.base_url, "password": INVOICE_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_DOCIFY_INVOICES", json.dumps(conn))
    # The first upload is turned away with 429 and Retry-After: 1, as a busy Docify would.
    docify_emulator.inject(Fault("upload", "status", status=429, retry_after=1, times=1))

    invoice = make_sample_invoices(tmp_path, 1)[0]  # a small invoice image

    hook = DocifyHook(docify_conn_id="docify_invoices")
    result = hook.run_scenario({"invoice_image": invoice})
    hook.close()

    assert result.is_success
    assert [r.status for r in docify_emulator.requests if r.endpoint == "upload"] == [429, 200]
    assert docify_emulator.runs_started(INVOICE_KEY) == 1  # billed once
