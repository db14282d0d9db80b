"""How values read in log lines, the same for every backend: no ``None``, rounded numbers.

A log line is read by a person: a missing value is left out with its clause rather than printed
as ``None`` ("price None", "None steps", "in None s"), and a duration is rounded to what a person
reads ("79.9 s", not "79.904321 s"). Each helper returns None for a missing value, so that a
line is built from the clauses that have one (``clauses``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(Decimal(str(value).strip()))
    except (InvalidOperation, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def seconds(value: Any) -> str | None:
    """``0.42 s``, ``79.9 s``, ``812 s``, ``2 h 05 min``; None when missing or not a number."""
    number = _number(value)
    if number is None or number < 0:
        return None
    if number < 10:
        return f"{number:.2f} s"
    if number < 100:
        return f"{number:.1f} s"
    if number < 3600:
        return f"{number:.0f} s"
    hours, rest = divmod(round(number), 3600)
    return f"{hours} h {rest // 60:02d} min"


def amount(value: Any) -> str | None:
    """A price or cost as Dify and Docify report it (``"0.0000360"``, ``2.0``): ``0.000036``, ``2``;
    None when missing (a missing price is not a price of 0)."""
    number = _number(value)
    if number is None:
        return None
    return f"{number:.7f}".rstrip("0").rstrip(".") or "0"


def counted(value: Any, noun: str) -> str | None:
    """``"1,234 tokens"``, ``"1 step"`` (``noun`` singular); None when ``value`` is missing."""
    number = _number(value)
    if number is None:
        return None
    whole = int(number)
    return f"{whole:,} {noun}{'' if whole == 1 else 's'}"


def priced(value: Any, currency: Any = None, word: str = "price") -> str | None:
    """``"price 0.0012 USD"``; None when no price was reported."""
    shown = amount(value)
    if shown is None:
        return None
    return f"{word} {shown}{' ' + str(currency) if currency else ''}"


def sized(size: Any) -> str:
    """`` (1,234 bytes)`` after a file's name, or nothing when its size is not known."""
    shown = counted(size, "byte")
    return f" ({shown})" if shown else ""


def clauses(*parts: str | None, sep: str = ", ") -> str:
    """The parts that have a value, joined (an empty string when none has)."""
    return sep.join(part for part in parts if part)


def turned_away_line(delay: float, attempt: int, waited: float, max_wait: float) -> str:
    """The log line of one wait after a run request was turned away (429, not started)."""
    return (
        f"Turned away by the server (429, run not started): waiting {delay:.1f}s before sending again "
        f"(attempt {attempt}; waited {waited:.0f}s of at most {max_wait:g}s)"
    )


def turned_away_for_good(
    label: str, times: int, waited: float, delay: float, bound: str, batch_operator: str | None, last: str
) -> str:
    """Why a run request turned away ``times`` times is not sent again, and what to change."""
    batch = (
        f"send the documents through {batch_operator}, which waits and adapts to the cap, " if batch_operator else ""
    )
    return (
        f"{label} turned the run request away {counted(times, 'time')} (HTTP 429, not started); the task waited "
        f"{waited:.0f}s, and the next wait ({delay:.1f}s) would pass {bound}. No run was started or billed. "
        f"{label} takes only so many runs at once: run these tasks in an Airflow pool sized to {label}'s cap "
        "(pool=... on the operator; a deferrable one needs a pool made with `airflow pools set --include-deferred`), "
        f"or {batch}or raise max_wait_not_started. The last answer: {last}"
    )


__all__ = ["amount", "clauses", "counted", "priced", "seconds", "sized", "turned_away_for_good", "turned_away_line"]
