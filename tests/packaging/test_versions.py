"""One version number and one description everywhere (issue 19 item 6).

The version: ``pyproject.toml``, ``docify_provider.__version__`` (what the clients send as
User-Agent), ``get_provider_info()`` (what Airflow shows), the installed distribution's metadata
where it was installed from this tree, ``CHANGELOG.md``'s newest release and ``docs/design.md``.
The description: pyproject's (PyPI's summary) is the provider's, links aside. The project URLs:
one repository, one docs site, the same as mkdocs.yml's.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest

import docify_provider
from docify_provider.get_provider_info import get_provider_info
from scripts.check_package import changelog_release, project

ROOT = Path(__file__).resolve().parents[2]
PROJECT = project(ROOT)
VERSION = PROJECT["version"]


def without_links(markdown: str) -> str:
    return re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", markdown)


def test_one_version_in_pyproject_the_package_the_provider_info_and_the_changelog() -> None:
    release, problems = changelog_release((ROOT / "CHANGELOG.md").read_text())
    assert problems == []
    assert get_provider_info()["versions"] == [VERSION]
    assert (docify_provider.__version__, release) == (VERSION, VERSION)


def from_this_tree(dist: importlib.metadata.Distribution) -> bool:
    """Installed from this tree (editable or as a wheel built from it: direct_url.json names it) or
    metadata lying in it (the .egg-info a build leaves beside the package)."""
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    imported = Path(docify_provider.__file__).resolve()
    return (
        direct_url.get("url") == ROOT.as_uri()
        or Path(dist.locate_file("docify_provider/__init__.py")).resolve() == imported
    )


def test_the_installed_distribution_has_the_version_when_installed_from_this_tree() -> None:
    """The metadata pip, uv and Airflow read, wherever on sys.path it came from this tree (the test
    command's editable install in .venv, the egg-info its package check leaves in the tree): a venv
    of another checkout holds that checkout's version and is left out."""
    dists = [dist for dist in importlib.metadata.distributions(name=PROJECT["name"]) if from_this_tree(dist)]
    if not dists:
        pytest.skip(f"{PROJECT['name']} is not installed from {ROOT} in {sys.prefix}")
    for dist in dists:
        where = dist.locate_file("")
        assert dist.version == VERSION, (
            f"{where}: stale metadata (scripts/bootstrap.sh reinstalls; the package check rebuilds the tree's egg-info)"
        )
        assert dist.metadata["Summary"] == PROJECT["description"], where


def test_the_provider_description_is_the_package_summary() -> None:
    description = get_provider_info()["description"]
    assert without_links(description) == PROJECT["description"]
    # Both backends, and Dify's two APIs, by name.
    for name in ("Docify", "Dify", "Service API", "account API"):
        assert name in PROJECT["description"], name


def test_design_names_the_version_and_no_later_milestone() -> None:
    design = (ROOT / "docs" / "design.md").read_text()
    assert f"version {VERSION}" in design
    current = tuple(int(part) for part in VERSION.split(".")[:2])
    milestones = {(int(major), int(minor)) for major, minor in re.findall(r"\bv(\d+)\.(\d+)\b", design)}
    assert milestones and all(milestone <= current for milestone in milestones), sorted(milestones)


def test_the_project_urls_are_one_repository_and_one_docs_site() -> None:
    urls = PROJECT["urls"]
    assert set(urls) == {"Documentation", "Changelog", "Issues", "Source"}
    assert all(url.startswith("https://") for url in urls.values())
    assert urls["Issues"] == urls["Source"] + "/issues"
    assert urls["Documentation"].endswith("/")
    # The docs site's changelog page is CHANGELOG.md (MkDocs: one folder per page).
    assert urls["Changelog"] == urls["Documentation"] + "changelog/"


def test_the_project_urls_are_the_docs_sites() -> None:
    """pyproject's Documentation URL is where mkdocs.yml says the site lives (``site_url``), and its
    Changelog URL is a page of that site; a ``repo_url``, if the site names one, is the Source URL."""
    mkdocs = ROOT / "mkdocs.yml"
    if not mkdocs.is_file():
        pytest.skip("no mkdocs.yml: no docs site in this tree")
    text = mkdocs.read_text()
    settings = dict(re.findall(r"^(site_url|repo_url):\s*(\S+)\s*$", text, re.MULTILINE))
    urls = PROJECT["urls"]
    assert settings.get("site_url") == urls["Documentation"], (
        f"mkdocs.yml's site_url is {settings.get('site_url')!r}; pyproject.toml's Documentation URL is "
        f"{urls['Documentation']!r}: the two must agree"
    )
    assert settings.get("repo_url", urls["Source"]) == urls["Source"]
    assert re.search(r"^\s*- .*: changelog\.md\s*$", text, re.MULTILINE), (
        "the Changelog URL is the docs' changelog page"
    )


def test_the_python_classifiers_are_the_tested_versions() -> None:
    """Every venv of the test command runs this interpreter's version (scripts/bootstrap.sh)."""
    tested = f"{sys.version_info.major}.{sys.version_info.minor}"
    declared = {
        c.rsplit(" :: ", 1)[1]
        for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert declared == {tested}
    assert "Framework :: Apache Airflow :: Provider" in PROJECT["classifiers"]
