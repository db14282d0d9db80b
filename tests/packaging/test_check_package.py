"""``scripts/check_package.py``, the test command's `package` part: it passes on the wheel and sdist
built from this tree and fails, naming the defect, on one that lacks the LICENSE, holds tests or
build leftovers, misses a package file, carries another version or does not pass ``twine check``.

The real wheel and sdist are built once a run (``uv build``, a few seconds; one xdist worker builds,
the others wait) from a copy of the tree, so the working tree is never touched; each bad artefact
is that wheel or sdist with one defect added.
"""

from __future__ import annotations

import fcntl
import io
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from scripts.check_package import (
    LICENSE,
    build,
    changelog_release,
    classifier_problems,
    main,
    project,
    sdist_problems,
    source_problems,
    twine_problems,
    wheel_problems,
)

ROOT = Path(__file__).resolve().parents[2]
VERSION = project(ROOT)["version"]
DIST_INFO = f"airflow_provider_docify-{VERSION}.dist-info"
TOP = f"airflow_provider_docify-{VERSION}"


def copy_tree(destination: Path) -> Path:
    """What the build and the check read: the package, pyproject, README, LICENSE and CHANGELOG."""
    shutil.copytree(
        ROOT / "docify_provider", destination / "docify_provider", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md", LICENSE, "CHANGELOG.md"):
        shutil.copy(ROOT / name, destination / name)
    return destination


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """One folder for the whole run: under pytest-xdist the workers' base folders share a parent."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def tree(shared: Path) -> Path:
    return shared / "package-tree"


@pytest.fixture(scope="session")
def built(shared: Path, tree: Path) -> dict[str, Path]:
    """The tree copied and built once per run, whichever worker comes first (the others wait)."""
    dist = shared / "package-dist"
    with (shared / "package.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (dist / "done").is_file():
            shutil.rmtree(tree, ignore_errors=True)
            copy_tree(tree)
            build(tree, dist)
            (dist / "done").touch()
    return {"wheel": next(dist.glob("*.whl")), "sdist": next(dist.glob("*.tar.gz"))}


def rewrite_wheel(
    source: Path,
    target_dir: Path,
    *,
    drop: tuple[str, ...] = (),
    add: dict[str, bytes] | None = None,
    edit: dict[str, Callable[[bytes], bytes]] | None = None,
) -> Path:
    """The wheel at ``source`` with entries dropped, added or edited, under the same file name."""
    target = target_dir / source.name
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            if item.filename in drop:
                continue
            data = old.read(item)
            if edit and item.filename in edit:
                data = edit[item.filename](data)
            new.writestr(item, data)
        for name, data in (add or {}).items():
            new.writestr(name, data)
    return target


def rewrite_sdist(
    source: Path, target_dir: Path, *, drop: tuple[str, ...] = (), add: dict[str, bytes] | None = None
) -> Path:
    """The sdist at ``source`` with members dropped or added (paths below its top folder)."""
    target = target_dir / source.name
    with tarfile.open(source) as old, tarfile.open(target, "w:gz") as new:
        for member in old.getmembers():
            if member.name.removeprefix(f"{TOP}/") in drop:
                continue
            new.addfile(member, old.extractfile(member) if member.isfile() else None)
        for name, data in (add or {}).items():
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))
    return target


@pytest.mark.slow
def test_the_package_built_from_this_tree_passes(
    built: dict[str, Path], tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wheel_problems(built["wheel"], tree) == []
    assert sdist_problems(built["sdist"], tree) == []
    assert main([str(built["wheel"]), str(built["sdist"]), "--root", str(tree)]) == 0
    out = capsys.readouterr().out
    assert f"package: ok: version {VERSION}" in out and "twine check --strict passed" in out
    # What a user gets: the LICENSE in both, and the wheel is the package and its metadata only.
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = wheel.namelist()
    assert f"{DIST_INFO}/licenses/LICENSE" in names
    assert {name.split("/")[0] for name in names} == {"docify_provider", DIST_INFO}
    with tarfile.open(built["sdist"]) as sdist:
        assert f"{TOP}/LICENSE" in sdist.getnames()


@pytest.mark.slow
def test_a_wheel_without_the_license_fails(
    built: dict[str, Path], tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = rewrite_wheel(built["wheel"], tmp_path, drop=(f"{DIST_INFO}/licenses/LICENSE",))
    assert wheel_problems(bad, tree) == [
        f"{bad.name}: no LICENSE (expected {DIST_INFO}/licenses/LICENSE; pyproject.toml's license-files)"
    ]
    # The command says so and exits 1, as the test command's `package` part would.
    assert main([str(bad), str(built["sdist"]), "--root", str(tree)]) == 1
    out = capsys.readouterr().out
    assert "package check FAILED" in out and "no LICENSE" in out


@pytest.mark.slow
def test_a_wheel_with_another_license_text_fails(built: dict[str, Path], tree: Path, tmp_path: Path) -> None:
    bad = rewrite_wheel(built["wheel"], tmp_path, edit={f"{DIST_INFO}/licenses/LICENSE": lambda text: text[:-200]})
    assert wheel_problems(bad, tree) == [
        f"{bad.name}: {DIST_INFO}/licenses/LICENSE differs from the repository's LICENSE"
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "junk",
    [
        "tests/test_operators.py",
        "docify_provider/tests/test_hook.py",
        "docify_provider/__pycache__/hooks.cpython-311.pyc",
        "build/lib/docify_provider/hooks/docify.py",
        ".venv/lib/python3.11/site-packages/x.py",
        "out/test-logs/ruff.log",
        "airflow_provider_docify.egg-info/PKG-INFO",
    ],
)
def test_a_wheel_with_tests_or_leftovers_fails(built: dict[str, Path], tree: Path, tmp_path: Path, junk: str) -> None:
    bad = rewrite_wheel(built["wheel"], tmp_path, add={junk: b"x = 1\n"})
    problems = wheel_problems(bad, tree)
    assert problems == [f"{bad.name}: holds what no user installs (tests, build leftovers, caches): {junk}"]


@pytest.mark.slow
def test_a_wheel_with_a_module_the_tree_no_longer_has_fails(built: dict[str, Path], tree: Path, tmp_path: Path) -> None:
    """What setuptools puts into a wheel built in a tree with a stale build/lib (issue 18 removed
    docify_provider/client; an old build/lib still has it)."""
    bad = rewrite_wheel(built["wheel"], tmp_path, add={"docify_provider/client/__init__.py": b""})
    assert wheel_problems(bad, tree) == [
        f"{bad.name}: files not in the tree's package (a stale build/ folder?): docify_provider/client/__init__.py"
    ]


@pytest.mark.slow
def test_a_wheel_missing_a_package_file_fails(built: dict[str, Path], tree: Path, tmp_path: Path) -> None:
    """A data file left out of package-data (py.typed is the one declared today)."""
    bad = rewrite_wheel(built["wheel"], tmp_path, drop=("docify_provider/py.typed",))
    problems = wheel_problems(bad, tree)
    assert len(problems) == 1 and "package files missing" in problems[0] and "docify_provider/py.typed" in problems[0]


@pytest.mark.slow
def test_a_wheel_of_another_version_or_without_the_provider_entry_point_fails(
    built: dict[str, Path], tree: Path, tmp_path: Path
) -> None:
    other = rewrite_wheel(
        built["wheel"],
        tmp_path,
        edit={f"{DIST_INFO}/METADATA": lambda text: text.replace(f"Version: {VERSION}".encode(), b"Version: 0.1.0")},
    )
    assert wheel_problems(other, tree) == [f"{other.name}: Version is '0.1.0', pyproject.toml says '{VERSION}'"]
    (tmp_path / "no-entry-point").mkdir()
    hidden = rewrite_wheel(
        built["wheel"],
        tmp_path / "no-entry-point",
        edit={f"{DIST_INFO}/entry_points.txt": lambda text: text.replace(b"[apache_airflow_provider]", b"")},
    )
    assert wheel_problems(hidden, tree) == [
        f"{hidden.name}: no [apache_airflow_provider] entry point: Airflow would not find the provider"
    ]


@pytest.mark.slow
def test_an_sdist_without_the_license_or_with_tests_fails(built: dict[str, Path], tree: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    no_license = rewrite_sdist(built["sdist"], tmp_path / "a", drop=(LICENSE,))
    assert sdist_problems(no_license, tree) == [
        f"{no_license.name}: no LICENSE (expected LICENSE; pyproject.toml's license-files)"
    ]
    with_tests = rewrite_sdist(
        built["sdist"], tmp_path / "b", add={"tests/conftest.py": b"", "build/lib/docify_provider/__init__.py": b""}
    )
    assert sdist_problems(with_tests, tree) == [
        f"{with_tests.name}: holds what no user installs (tests, build leftovers, caches): "
        "build/lib/docify_provider/__init__.py, tests/conftest.py"
    ]


@pytest.mark.slow
def test_twine_check_failing_fails_the_check(built: dict[str, Path], tmp_path: Path) -> None:
    """The README declared reStructuredText: the Markdown does not render, and `twine check --strict`
    says so; the check passes its words on."""
    bad = rewrite_wheel(
        built["wheel"],
        tmp_path,
        edit={
            f"{DIST_INFO}/METADATA": lambda text: text.replace(
                b"Description-Content-Type: text/markdown", b"Description-Content-Type: text/x-rst"
            )
        },
    )
    problems = twine_problems([bad])
    assert len(problems) == 1 and problems[0].startswith("twine check --strict failed:")
    assert bad.name in problems[0]
    assert twine_problems([built["wheel"], built["sdist"]]) == []


def test_the_source_agrees_and_a_disagreement_is_named(tmp_path: Path) -> None:
    assert source_problems(ROOT) == []
    tree = copy_tree(tmp_path)
    init = tree / "docify_provider" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{VERSION}"', '"9.9.9"'))
    changelog = tree / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace(f"## [{VERSION}]", "## [9.9.8]", 1))
    (tree / LICENSE).unlink()
    assert source_problems(tree) == [
        f"docify_provider/__init__.py: __version__ is '9.9.9', pyproject.toml says '{VERSION}'",
        f"CHANGELOG.md: the newest release is 9.9.8, pyproject.toml says {VERSION}",
        "LICENSE is missing from the repository",
    ]


def test_the_changelog_headings() -> None:
    good = "# Changelog\n\n## [Unreleased]\n\n### Added\n- x\n\n## [0.6.0] - 2026-12-06\n\n## [0.5.1] - 2026-11-01\n"
    assert changelog_release(good) == ("0.6.0", [])
    assert changelog_release("# Changelog\n\n## [0.6.0] - 2026-12-06\n") == (
        "0.6.0",
        ["CHANGELOG.md: the first section must be '## [Unreleased]'"],
    )
    assert changelog_release("## [Unreleased]\n## 0.6.0\n") == (
        None,
        [
            "CHANGELOG.md: '## 0.6.0' is not '## [X.Y.Z] - YYYY-MM-DD'",
            "CHANGELOG.md: no release heading '## [X.Y.Z] - YYYY-MM-DD'",
        ],
    )
    assert changelog_release("## [Unreleased]\n## [0.5.0] - 2026-11-01\n## [0.6.0] - 2026-12-06\n") == (
        "0.5.0",
        ["CHANGELOG.md: the releases are not newest first"],
    )


def test_classifiers_are_ones_pypi_accepts() -> None:
    assert classifier_problems(project(ROOT)["classifiers"]) == []
    assert classifier_problems(
        ["Framework :: Apache Airflow :: Providers", "License :: OSI Approved :: Apache Software License"]
    ) == [
        "pyproject.toml: classifier 'Framework :: Apache Airflow :: Providers' is not one PyPI accepts",
        "pyproject.toml: 'License :: OSI Approved :: Apache Software License': the license is the SPDX "
        "expression `license`; setuptools refuses both",
    ]
