"""Nothing is paid before its outputs have somewhere to go (real ``dag.test()`` runs, emulators on 127.0.0.1).

Every run operator opens ``attachments_to`` before any upload or run
(``RunOperatorBase._check_output_targets``): a storage URL whose scheme no installed provider
registers fails the task with the backend's ``ConfigError`` naming the parameter and the scheme,
and the emulators count no upload and no run. ``memory://`` is not registered by any provider
installed here (on any Airflow line), so it fails too unless a test registers it
(``memory_object_storage``), in which case it goes on working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_helpers import console_text, new_dag, run_dag
from docify_provider.operators.dify import DifyStreamWorkflowOperator
from docify_provider.operators.dify_openapi import DifyRunAppOperator
from docify_provider.operators.docify import DocifyRunScenarioOperator, DocifyStreamScenarioOperator
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN
from docify_provider.testing.samples import SAMPLE_PNG

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.airflow_line(
        "ObjectStoragePath: universal-pathlib 0.2 on 3.0/3.1; the filesystem registry moved to airflow.sdk.io"
    ),
]

#: An unregistered scheme (no provider anywhere registers it) and one Airflow ships none for.
UNREGISTERED = ("nosuchfs://bucket/x/", "memory://docify-safe-bucket/out/")
DOCUMENT_KEY = "app-EmuDocumentWorkflow00002"


def _scheme(url: str) -> str:
    return url.partition("://")[0]


def _assert_refused(text: str, url: str, error: str) -> None:
    assert error in text, text[-3000:]
    assert f"attachments_to='{url}'" in text and f"cannot open the '{_scheme(url)}' storage" in text, text[-3000:]
    assert "Nothing was uploaded or run" in text


@pytest.mark.parametrize("url", UNREGISTERED)
@pytest.mark.parametrize("deferrable", [False, True])
def test_docify_unregistered_attachments_scheme_fails_before_any_upload_or_run(
    docify_conns: Any, tmp_path: Path, capfd: Any, url: str, deferrable: bool
) -> None:
    emu = docify_conns
    image = tmp_path / "acme.png"
    image.write_bytes(SAMPLE_PNG)
    with new_dag("out_docify_refused") as dag:
        kwargs = {"task_id": "ocr", "inputs": {"invoice_image": str(image)}, "attachments_to": url}
        if deferrable:
            DocifyStreamScenarioOperator(deferrable=True, **kwargs)
        else:
            DocifyRunScenarioOperator(**kwargs)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("ocr") == "failed"
    _assert_refused(text, url, "DocifyConfigError")
    assert emu.runs_started() == 0
    assert emu.uploads == []


@pytest.mark.parametrize("url", UNREGISTERED)
def test_dify_unregistered_attachments_scheme_fails_before_any_upload_or_run(
    dify_conns: Any, tmp_path: Path, capfd: Any, url: str
) -> None:
    emu = dify_conns
    doc = tmp_path / "notes.txt"
    doc.write_text("quarterly notes")
    with new_dag("out_dify_refused") as dag:
        DifyStreamWorkflowOperator(
            task_id="run", dify_conn_id="dify_document", inputs={"document": str(doc)}, attachments_to=url
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("run") == "failed"
    _assert_refused(text, url, "DifyConfigError")
    assert emu.runs_started() == 0
    assert emu.upload_count() == 0


def test_account_api_unregistered_attachments_scheme_fails_before_any_run(openapi_conn: Any, capfd: Any) -> None:
    emu = openapi_conn
    url = UNREGISTERED[0]
    with new_dag("out_openapi_refused") as dag:
        DifyRunAppOperator(task_id="run", app="Text Writer", inputs={"topic": "x"}, attachments_to=url)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("run") == "failed"
    _assert_refused(text, url, "DifyOpenAPIConfigError")
    assert emu.runs_started(ACCOUNT_TOKEN) == 0


def test_the_error_names_the_provider_for_a_known_scheme_and_hides_credentials() -> None:
    from docify_provider.docify.errors import DocifyConfigError, DocifyError
    from docify_provider.operators.base import open_output_target

    with pytest.raises(DocifyConfigError) as caught:
        open_output_target("attachments_to", "nosuchfs://user:s3cret@bucket/x", DocifyError)
    assert "s3cret" not in str(caught.value)
    assert "attachments_to='nosuchfs://***@bucket/x'" in str(caught.value)
    try:
        import s3fs  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - s3 may be registered where s3fs and the Amazon provider are installed
        return
    with pytest.raises(DocifyConfigError, match="install apache-airflow-providers-amazon on every worker"):
        open_output_target("attachments_to", "s3://bucket/x", DocifyError)


def test_local_folders_and_file_urls_pass_without_touching_the_disk(tmp_path: Path) -> None:
    from docify_provider.docify.errors import DocifyError
    from docify_provider.operators.base import open_output_target

    for value in (str(tmp_path / "a"), "file://" + str(tmp_path / "b"), tmp_path / "c"):
        open_output_target("attachments_to", value, DocifyError)
    assert list(tmp_path.iterdir()) == [], "nothing is created before a file arrives"


def test_a_registered_memory_scheme_still_stores_the_outputs(
    dify_conns: Any, tmp_path: Path, memory_object_storage: Any
) -> None:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    emu = dify_conns
    doc = tmp_path / "notes.txt"
    doc.write_text("quarterly notes")
    with new_dag("out_memory_ok") as dag:
        DifyStreamWorkflowOperator(
            task_id="run",
            dify_conn_id="dify_document",
            inputs={"document": str(doc)},
            attachments_to="memory://docify-safe-bucket/out/",
        )
    outcome = run_dag(dag)
    assert outcome.state("run") == "success"
    (file,) = outcome.xcom("run")["files"]
    assert file["path"].startswith("memory://") and "docify-safe-bucket/out/" in file["path"], file["path"]
    assert ObjectStoragePath(file["path"]).read_bytes().startswith(b"variable,filename,type")
    assert emu.runs_started(key=DOCUMENT_KEY) == 1
