"""``airflow dify login|status|sessions|logout``: the provider's commands in Airflow's own CLI.

Airflow 3.2+ reads provider info ``cli`` (import paths of functions returning ``CLICommand``s)
and calls them while it builds its parser; older lines never import this module, and the
``airflow-dify`` console script offers the same commands there. The options come from the one
table in :mod:`docify_provider.cli.dify_login`; the actions are imported lazily so that
``airflow --help`` does not pay for the client.
"""

from __future__ import annotations

from typing import Any


def get_dify_cli_commands() -> list[Any]:
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    from docify_provider.cli.dify_login import COMMANDS

    subcommands = [
        ActionCommand(
            name=name,
            help=help_text,
            description=help_text,
            func=lazy_load_command(f"docify_provider.cli.dify_login.{name}_command"),
            args=tuple(Arg(flags, **kwargs) for flags, kwargs in options),
        )
        for name, (help_text, options) in COMMANDS.items()
    ]
    return [
        GroupCommand(
            name="dify",
            help="Log in to Dify's account API (the dify_openapi connection), check it, log out",
            subcommands=subcommands,
        )
    ]
