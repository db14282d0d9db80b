"""What a reader of the README would run into first: its links and its commands.

A link to a file that is not there is a 404 on the repository's page; a command shown as
``scripts/x.sh`` that is not executable is "Permission denied" (issue 19: ``scripts/demo.py --all``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _shell_lines() -> list[str]:
    """Every line of the README's ```bash blocks, comments cut off."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    return [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]


def test_every_relative_link_points_at_a_file_of_the_repository() -> None:
    targets = [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)]+)\)", README)]
    relative = [t for t in targets if t and "://" not in t]
    assert relative, "the README links to no file of the repository"
    missing = [t for t in relative if not (ROOT / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_every_script_the_readme_runs_exists_and_runs_as_written() -> None:
    commands = []
    for line in _shell_lines():
        for command in re.split(r"&&|;|\|", line):
            words = command.split()
            # VAR=value prefixes, then the program
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
                words.pop(0)
            if words:
                commands.append(words)
    run_directly = [w[0] for w in commands if w[0].startswith("scripts/")]
    run_by_bash = [w[1] for w in commands if w[0] in ("bash", "sh") and len(w) > 1 and w[1].startswith("scripts/")]
    assert "scripts/demo.sh" in run_directly and "scripts/test.sh" in run_by_bash  # the two commands
    for script in run_directly:
        path = ROOT / script
        assert path.is_file(), f"README runs {script}, which does not exist"
        assert os.access(path, os.X_OK), f"README runs {script} directly, but it is not executable"
        assert path.read_text(encoding="utf-8").startswith("#!"), f"{script} has no #! line"
    for script in run_by_bash:
        assert (ROOT / script).is_file(), f"README runs bash {script}, which does not exist"
