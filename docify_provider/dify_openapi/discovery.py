"""Which apps to run, decided on the client: ``GET /apps`` filters checked row by row, and the
explicit selection that replaces tags.

Every filter of ``GET /apps`` is applied by the server, and a server that ignores one answers
as if it matched everything: current Dify ignores ``tag`` (it is no longer a field) and sends
rows without ``tags`` (server-behaviour reference, Part C5). When the listing decides what runs,
and every run is billed, an ignored filter means running every app of the workspace. So:

- ``checked_rows`` keeps only the rows that *show* they match each filter asked for (``mode``,
  ``workspace_id``, ``name``: a substring, or the id when it is a UUID, as Dify matches it), and
  raises ``DifyOpenAPITagFilterError`` for a ``tag`` when the rows carry no ``tags`` at all:
  nothing there can show an app carries the tag.
- ``select_apps`` is what to use instead of a tag: an explicit list of exact app names or ids
  (each must match exactly one app, or nothing is returned) and/or a glob pattern matched on
  the whole app name here, never by the server.
- ``check_mode`` rejects a mode Dify does not know before anything is sent (Dify answers 422).

Sans-IO: the clients and ``DifyOpenAPIHook`` call these on rows they listed.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import re
from collections.abc import Sequence

from docify_provider.dify_openapi.errors import (
    DifyOpenAPIAppLookupError,
    DifyOpenAPIInputError,
    DifyOpenAPITagFilterError,
)
from docify_provider.dify_openapi.models import AppSummary

log = logging.getLogger(__name__)

#: ``GET /apps`` ``mode`` is a closed enum on Dify (an unknown value is a 422).
APP_MODES = ("completion", "chat", "advanced-chat", "workflow", "agent-chat")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

#: What a DAG uses instead of ``tag`` (the nightly example, README "Run a set of apps every night").
INSTEAD_OF_TAGS = (
    "name the apps to run instead: DifyOpenAPIHook.select_apps(apps=[<exact app names or ids>]) "
    "and/or select_apps(name_pattern='<glob on the whole app name, e.g. nightly-*>'), both checked "
    "against every listed app by this package, not by the server"
)


def check_mode(mode: str | None) -> None:
    """A ``mode`` filter Dify knows, or the caller's mistake named before anything is sent."""
    if mode is not None and mode not in APP_MODES:
        raise DifyOpenAPIInputError([f"mode: {mode!r} is not a Dify app mode; use one of {', '.join(APP_MODES)}"])


def _name_matches(row: AppSummary, name: str) -> bool:
    """Dify's ``name`` filter: a UUID is an exact id lookup, anything else a case-insensitive substring."""
    if _UUID.match(name):
        return row.id.lower() == name.lower()
    return name.casefold() in row.name.casefold()


def close_names(wanted: str, rows: Sequence[AppSummary], limit: int = 3) -> list[AppSummary]:
    """The listed apps whose names look most like ``wanted`` (a typo, another case, a part of the name).

    difflib's ratio on case-folded names (0.6 or more, its own default for "close"); a name that
    contains ``wanted`` or is contained in it counts as 0.75 at least. Only names nearly as close
    as the closest are kept (within 0.15), so an exact match in another case is suggested alone.
    """
    folded = wanted.casefold()
    scored = []
    for row in rows:
        name = row.name.casefold()
        score = difflib.SequenceMatcher(None, folded, name).ratio()
        if folded and name and (folded in name or name in folded):
            score = max(score, 0.75)
        if score >= 0.6:
            scored.append((score, row))
    if not scored:
        return []
    best = max(score for score, _ in scored)
    scored.sort(key=lambda pair: -pair[0])
    return [row for score, row in scored[:limit] if score >= best - 0.15]


def no_such_app(
    param: str, wanted: str, rows: Sequence[AppSummary], *, or_id: bool = False
) -> tuple[str, list[AppSummary]]:
    """The problem for an app name that none of ``rows`` (every app of the workspace) has, and the
    apps it suggests: the close names ("did you mean"), else the workspace's apps, so that a typo
    is fixed from the message alone."""
    head = f"{param}: no app named {wanted!r}{' (nor with that id)' if or_id else ''} in this workspace"
    close = close_names(wanted, rows)
    if close:
        return f"{head}; did you mean {' or '.join(repr(r.name) for r in close)}?", close
    if not rows:
        return f"{head}, which has no apps this account can see", []
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    return f"{head}; its apps: {', '.join(repr(r.name) for r in rows[:10])}{more}", list(rows[:10])


def _keep(rows: list[AppSummary], what: str, wanted: str, matches: bool | list[bool]) -> list[AppSummary]:
    flags = matches if isinstance(matches, list) else [matches] * len(rows)
    kept = [row for row, ok in zip(rows, flags, strict=True) if ok]
    if len(kept) < len(rows):
        dropped = ", ".join(f"{r.name!r} ({r.id})" for r, ok in zip(rows, flags, strict=True) if not ok)
        log.warning(
            "Dify returned %d app(s) that do not show %s %r; they are left out (%s)",
            len(rows) - len(kept),
            what,
            wanted,
            dropped[:500],
        )
    return kept


def checked_rows(
    rows: list[AppSummary],
    *,
    mode: str | None = None,
    name: str | None = None,
    tag: str | None = None,
    workspace_id: str | None = None,
) -> list[AppSummary]:
    """The rows that show they match every filter asked for; the others are left out (logged).

    A ``tag`` on rows without ``tags`` raises ``DifyOpenAPITagFilterError`` (naming the filter,
    why, and what to use instead) rather than returning apps nobody can show carry the tag.
    """
    if tag is not None:
        untagged = [r for r in rows if r.tags is None]
        if untagged:
            raise DifyOpenAPITagFilterError(
                [
                    f"tag={tag!r}: this Dify server no longer filters apps by tag (it ignores the tag filter "
                    f"and its app rows carry no tags: {len(untagged)} of {len(rows)} row(s) without tags), so "
                    f"no app can be shown to carry {tag!r} and none is returned to run; {INSTEAD_OF_TAGS}"
                ]
            )
        rows = _keep(rows, "the tag", tag, [tag in (r.tags or []) for r in rows])
    if mode is not None:
        rows = _keep(rows, "the mode", mode, [r.mode == mode for r in rows])
    if workspace_id is not None:
        rows = _keep(rows, "the workspace", workspace_id, [r.workspace_id == workspace_id for r in rows])
    if name:
        rows = _keep(rows, "a name matching", name, [_name_matches(r, name) for r in rows])
    return rows


def select_apps(
    rows: Sequence[AppSummary], *, apps: Sequence[str] | None = None, name_pattern: str | None = None
) -> list[AppSummary]:
    """The listed apps a DAG names: ``apps`` (exact names or ids) and/or ``name_pattern`` (a glob on
    the whole name, case-sensitive), in listing order, each once.

    Every entry of ``apps`` must match exactly one app: an unknown or ambiguous one raises
    ``DifyOpenAPIAppLookupError`` listing the candidates, so a typo never quietly skips an app and
    a duplicated name never runs two. A pattern that matches nothing selects nothing (logged).
    """
    if isinstance(apps, str):
        raise DifyOpenAPIInputError([f"apps: give a list of app names or ids, not the string {apps!r}"])
    names = [str(a) for a in (apps or [])]
    if not names and not name_pattern:
        raise DifyOpenAPIInputError(
            ["apps / name_pattern: name the apps to run (exact names or ids) or give a name pattern; neither was given"]
        )
    chosen: dict[str, AppSummary] = {}
    problems: list[str] = []
    candidates: list[AppSummary] = []
    for wanted in names:
        hits = [r for r in rows if (r.id.lower() == wanted.lower() if _UUID.match(wanted) else r.name == wanted)]
        if len(hits) == 1:
            chosen[hits[0].id] = hits[0]
        elif hits:
            listing = ", ".join(f"{r.id} ({r.mode})" for r in hits)
            problems.append(f"apps: {wanted!r} names {len(hits)} apps ({listing}); give the app id instead")
            candidates.extend(hits)
        else:
            problem, similar = no_such_app("apps", wanted, rows, or_id=True)
            problems.append(problem)
            candidates.extend(similar)
    if problems:
        raise DifyOpenAPIAppLookupError(problems, candidates=[r.as_dict() for r in candidates[:20]])
    if name_pattern:
        matched = [r for r in rows if fnmatch.fnmatchcase(r.name, name_pattern)]
        if not matched:
            log.warning("No app name matches the pattern %r (%d app(s) listed)", name_pattern, len(rows))
        for row in matched:
            chosen.setdefault(row.id, row)
    order = {r.id: i for i, r in enumerate(rows)}
    return sorted(chosen.values(), key=lambda r: order.get(r.id, len(order)))


__all__ = ["APP_MODES", "INSTEAD_OF_TAGS", "check_mode", "checked_rows", "close_names", "no_such_app", "select_apps"]
