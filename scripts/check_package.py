#!/usr/bin/env python
"""Build the wheel and the sdist and check they are fit to publish: the test command's `package` part.

    python scripts/check_package.py --build            # uv build into out/dist, then check both
    python scripts/check_package.py FILE_OR_DIR ...    # check artefacts built already

What is checked, against this tree (``--root``, default the repository):

- **the source**: one version in ``pyproject.toml``, ``docify_provider/__init__.py`` and the newest
  release of ``CHANGELOG.md`` (an ``## [Unreleased]`` section on top, then ``## [X.Y.Z] - DATE``);
  every classifier is one PyPI accepts (``trove-classifiers``), and none is a ``License ::`` one
  (the license is the SPDX expression; setuptools refuses both);
- **each artefact**: the LICENSE is in it, byte for byte the repository's (the wheel's
  ``.dist-info/licenses/LICENSE``, the sdist's top level) and its metadata names it
  (``License-File``) with the license expression; its name and metadata carry the version; its
  summary is pyproject's; it holds nothing a user does not install: no ``tests``, ``out``,
  ``build`` or ``dist`` folder, no venv, bytecode or stray ``.egg-info`` (the sdist keeps the one
  setuptools writes), nothing at its top level but the package and its metadata; and the package
  is complete: every file under ``docify_provider/`` is in it and nothing else (a data file not
  declared in package-data, a folder without ``__init__.py`` or a module left in a stale
  ``build/lib`` would all show here); the wheel declares the ``apache_airflow_provider`` entry point;
- **``twine check --strict``** on both: the metadata and the README render as PyPI renders them.

Exit status 1 with one line per problem. The build is ``uv build`` (the sdist, then the wheel built
from the sdist, so the wheel is what a user building from the sdist gets); uv is in ``.venv``
(``scripts/bootstrap.sh``), twine, readme-renderer[md] and trove-classifiers in the ``dev`` extra.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "docify_provider"
LICENSE = "LICENSE"
PROVIDER_ENTRY_POINT = "[apache_airflow_provider]"
#: What setuptools puts at an sdist's top level besides the package and its .egg-info folder.
SDIST_TOP_LEVEL = frozenset({LICENSE, "README.md", "pyproject.toml", "PKG-INFO", "setup.cfg"})
#: Path parts that never belong in a distribution: tests, the test command's output, build
#: leftovers, caches, version control.
JUNK_PARTS = frozenset(
    {
        "tests",
        "test",
        "out",
        "build",
        "dist",
        "__pycache__",
        ".git",
        ".airflow-home",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".grimp_cache",
    }
)
RELEASE_HEADING = re.compile(r"^## \[(?P<version>\d+\.\d+\.\d+)\] - (?P<date>\d{4}-\d{2}-\d{2})$")


def project(root: Path) -> dict:
    """pyproject.toml's [project] table."""
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]


def dist_name(project_table: dict) -> str:
    """The distribution name as wheel and sdist file names spell it (PEP 625 / 427)."""
    return re.sub(r"[-_.]+", "_", project_table["name"]).lower()


def source_version(root: Path) -> str | None:
    """``__version__`` of the package, read without importing it."""
    tree = ast.parse((root / PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(target, ast.Name) and target.id == "__version__" for target in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    return None


def changelog_release(text: str) -> tuple[str | None, list[str]]:
    """The newest release of a Keep a Changelog file, and what is wrong with its headings.

    The first ``## `` heading must be ``## [Unreleased]`` and the next ``## [X.Y.Z] - YYYY-MM-DD``;
    every later release heading must have that form too, each older than the one above it.
    """
    headings = re.findall(r"^## .*$", text, re.MULTILINE)
    problems = []
    if not headings or headings[0].strip() != "## [Unreleased]":
        problems.append("CHANGELOG.md: the first section must be '## [Unreleased]'")
    releases = headings[1:] if headings and headings[0].strip() == "## [Unreleased]" else headings
    versions = []
    for heading in releases:
        match = RELEASE_HEADING.match(heading.strip())
        if match is None:
            problems.append(f"CHANGELOG.md: {heading.strip()!r} is not '## [X.Y.Z] - YYYY-MM-DD'")
            continue
        versions.append(tuple(int(part) for part in match["version"].split(".")))
    if versions != sorted(versions, reverse=True):
        problems.append("CHANGELOG.md: the releases are not newest first")
    if not versions:
        problems.append("CHANGELOG.md: no release heading '## [X.Y.Z] - YYYY-MM-DD'")
        return None, problems
    return ".".join(map(str, versions[0])), problems


def classifier_problems(classifiers: list[str]) -> list[str]:
    try:
        from trove_classifiers import classifiers as known
    except ImportError:
        return ["trove-classifiers is not installed (the dev extra has it): cannot check the classifiers"]
    problems = [f"pyproject.toml: classifier {c!r} is not one PyPI accepts" for c in classifiers if c not in known]
    problems += [
        f"pyproject.toml: {c!r}: the license is the SPDX expression `license`; setuptools refuses both"
        for c in classifiers
        if c.startswith("License ::")
    ]
    return problems


def source_problems(root: Path) -> list[str]:
    table = project(root)
    version = table["version"]
    problems = []
    init_version = source_version(root)
    if init_version != version:
        problems.append(f"{PACKAGE}/__init__.py: __version__ is {init_version!r}, pyproject.toml says {version!r}")
    changelog = root / "CHANGELOG.md"
    if changelog.is_file():
        release, changelog_problems = changelog_release(changelog.read_text())
        problems += changelog_problems
        if release is not None and release != version:
            problems.append(f"CHANGELOG.md: the newest release is {release}, pyproject.toml says {version}")
    else:
        problems.append("CHANGELOG.md is missing")
    if not (root / LICENSE).is_file():
        problems.append(f"{LICENSE} is missing from the repository")
    return problems + classifier_problems(table.get("classifiers", []))


def package_files(root: Path) -> set[str]:
    """Every file under the package folder, as archive paths (bytecode caches left out)."""
    base = root / PACKAGE
    return {
        path.relative_to(root).as_posix()
        for path in base.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    }


def junk(paths: set[str], allowed: frozenset[str] = frozenset()) -> list[str]:
    """Paths that never belong in a distribution (``allowed``: top-level folders that may)."""
    found = set()
    for path in paths:
        parts = PurePosixPath(path).parts
        for i, part in enumerate(parts):
            if i == 0 and part in allowed:
                continue
            name = parts[-1]
            if (
                part in JUNK_PARTS
                or part.startswith(".venv")
                or part.endswith(".egg-info")
                or name.endswith((".pyc", ".pyo"))
                or (name.startswith("test_") and name.endswith(".py"))
                or name == "conftest.py"
            ):
                found.add(path)
                break
    return sorted(found)


def _listing(paths: list[str] | set[str], limit: int = 5) -> str:
    items = sorted(paths)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def metadata_problems(where: str, metadata: Message, table: dict) -> list[str]:
    problems = []
    expected = {
        "Name": table["name"],
        "Version": table["version"],
        "Summary": table["description"],
        "License-Expression": table.get("license"),
    }
    for field, value in expected.items():
        if metadata.get(field) != value:
            problems.append(f"{where}: {field} is {metadata.get(field)!r}, pyproject.toml says {value!r}")
    if LICENSE not in (metadata.get_all("License-File") or []):
        problems.append(f"{where}: no 'License-File: {LICENSE}' (pyproject.toml's license-files)")
    return problems


def content_problems(kind: str, name: str, files: dict[str, bytes], root: Path, table: dict) -> list[str]:
    """What is wrong with a wheel's or an sdist's files (``files``: path inside the archive, below the
    sdist's top folder -> the bytes of the files the check reads, empty for the rest)."""
    problems = []
    norm = dist_name(table)
    if kind == "wheel":
        license_path = f"{norm}-{table['version']}.dist-info/licenses/{LICENSE}"
        allowed_top = {PACKAGE, f"{norm}-{table['version']}.dist-info"}
        allowed_junk: frozenset[str] = frozenset()
    else:
        license_path = LICENSE
        allowed_top = {PACKAGE, f"{norm}.egg-info"} | SDIST_TOP_LEVEL
        allowed_junk = frozenset({f"{norm}.egg-info"})
    paths = set(files)
    if license_path not in paths:
        problems.append(f"{name}: no {LICENSE} (expected {license_path}; pyproject.toml's license-files)")
    elif files[license_path] != (root / LICENSE).read_bytes():
        problems.append(f"{name}: {license_path} differs from the repository's {LICENSE}")
    bad = junk(paths, allowed_junk)
    if bad:
        problems.append(f"{name}: holds what no user installs (tests, build leftovers, caches): {_listing(bad)}")
    stray = {PurePosixPath(path).parts[0] for path in paths} - allowed_top - {PurePosixPath(p).parts[0] for p in bad}
    if stray:
        problems.append(f"{name}: unexpected at the top level: {_listing(stray)}")
    in_archive = {path for path in paths if path.startswith(f"{PACKAGE}/")}
    in_tree = package_files(root)
    if in_tree - in_archive:
        problems.append(
            f"{name}: package files missing (declare data files in [tool.setuptools.package-data]; a folder needs "
            f"an __init__.py): {_listing(in_tree - in_archive)}"
        )
    extra = in_archive - in_tree - set(bad)
    if extra:
        problems.append(f"{name}: files not in the tree's package (a stale build/ folder?): {_listing(extra)}")
    return problems


def wheel_problems(path: Path, root: Path) -> list[str]:
    table = project(root)
    norm, version = dist_name(table), table["version"]
    expected_name = f"{norm}-{version}-py3-none-any.whl"
    problems = [] if path.name == expected_name else [f"{path.name}: expected the file name {expected_name}"]
    dist_info = f"{norm}-{version}.dist-info"
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
        files = {name: b"" for name in names}
        for wanted in (f"{dist_info}/licenses/{LICENSE}", f"{dist_info}/METADATA", f"{dist_info}/entry_points.txt"):
            if wanted in files:
                files[wanted] = archive.read(wanted)
    problems += content_problems("wheel", path.name, files, root, table)
    if f"{dist_info}/METADATA" not in files:
        return [*problems, f"{path.name}: no {dist_info}/METADATA"]
    metadata = HeaderParser().parsestr(files[f"{dist_info}/METADATA"].decode())
    problems += metadata_problems(path.name, metadata, table)
    entry_points = files.get(f"{dist_info}/entry_points.txt", b"").decode()
    if PROVIDER_ENTRY_POINT not in entry_points:
        problems.append(f"{path.name}: no {PROVIDER_ENTRY_POINT} entry point: Airflow would not find the provider")
    return problems


def sdist_problems(path: Path, root: Path) -> list[str]:
    table = project(root)
    norm, version = dist_name(table), table["version"]
    top = f"{norm}-{version}"
    problems = [] if path.name == f"{top}.tar.gz" else [f"{path.name}: expected the file name {top}.tar.gz"]
    with tarfile.open(path) as archive:
        members = [member for member in archive.getmembers() if member.isfile()]
        outside = [member.name for member in members if not member.name.startswith(f"{top}/")]
        if outside:
            problems.append(f"{path.name}: files outside {top}/: {_listing(outside)}")
        files: dict[str, bytes] = {}
        for member in members:
            if member.name.startswith(f"{top}/"):
                relative = member.name[len(top) + 1 :]
                wanted = relative in (LICENSE, "PKG-INFO")
                extracted = archive.extractfile(member) if wanted else None
                files[relative] = extracted.read() if extracted is not None else b""
    problems += content_problems("sdist", path.name, files, root, table)
    if "PKG-INFO" not in files:
        return [*problems, f"{path.name}: no PKG-INFO"]
    problems += metadata_problems(path.name, HeaderParser().parsestr(files["PKG-INFO"].decode()), table)
    return problems


def twine_problems(paths: list[Path]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "twine", "--no-color", "check", "--strict", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        # twine's output (rich) is wrapped at the terminal's width, file names and all: one line each.
        env={**os.environ, "COLUMNS": "500"},
    )
    if result.returncode == 0:
        return []
    output = "\n".join(line.rstrip() for line in (result.stdout + result.stderr).strip().splitlines())
    if "No module named twine" in output:
        return ["twine is not installed (the dev extra has it; scripts/bootstrap.sh installs it)"]
    return [f"twine check --strict failed:\n{output}"]


def find_uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file():
        return str(beside)
    found = shutil.which("uv")
    if found is None:
        raise SystemExit("package check: uv not found (scripts/bootstrap.sh installs it into .venv)")
    return found


def build(root: Path, out: Path) -> list[Path]:
    """``uv build``: the sdist, then the wheel built from it, into ``out`` (its old artefacts removed)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("*.whl"), *out.glob("*.tar.gz")]:
        old.unlink()
    result = subprocess.run(
        [find_uv(), "build", "--quiet", "--python", sys.executable, "--out-dir", str(out.resolve()), str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"package check: uv build failed:\n{(result.stdout + result.stderr).strip()}")
    return sorted([*out.glob("*.tar.gz"), *out.glob("*.whl")])


def artefacts(arguments: list[str]) -> list[Path]:
    paths = []
    for argument in arguments:
        path = Path(argument)
        paths += sorted([*path.glob("*.tar.gz"), *path.glob("*.whl")]) if path.is_dir() else [path]
    return paths


def check(paths: list[Path], root: Path) -> list[str]:
    """Every problem of the source and of the artefacts (one wheel and one sdist expected)."""
    problems = source_problems(root)
    wheels = [path for path in paths if path.name.endswith(".whl")]
    sdists = [path for path in paths if path.name.endswith(".tar.gz")]
    if len(wheels) != 1 or len(sdists) != 1:
        problems.append(f"expected one wheel and one sdist, got {_listing([path.name for path in paths]) or 'none'}")
    for wheel in wheels:
        problems += wheel_problems(wheel, root)
    for sdist in sdists:
        problems += sdist_problems(sdist, root)
    if wheels or sdists:
        problems += twine_problems([*sdists, *wheels])
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="wheel, sdist or a folder holding them")
    parser.add_argument("--build", action="store_true", help="build the wheel and sdist first (uv build)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "dist", help="where --build puts them")
    parser.add_argument("--root", type=Path, default=ROOT, help="the source tree they are built from")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    paths = artefacts(args.paths)
    if args.build:
        started = time.monotonic()
        paths += build(root, args.out)
        print(f"package: built {', '.join(path.name for path in paths)} in {time.monotonic() - started:.1f} s")
    problems = check(paths, root)
    if problems:
        print(f"package check FAILED ({len(problems)} problem{'s' if len(problems) > 1 else ''}):")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    version = project(root)["version"]
    print(
        f"package: ok: version {version} in pyproject.toml, {PACKAGE}/__init__.py and CHANGELOG.md; "
        f"{LICENSE} in {' and '.join(path.name for path in paths)}; the package complete, no tests or build "
        "leftovers; twine check --strict passed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
