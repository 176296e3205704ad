"""What every command of the project shares on the command line: its context settings and one-line usage errors.

click prints a usage error as four lines (the usage, a hint to try ``--help``, a blank line, the error); the
project's contract is one clear line per error, as for any other bad input (a file, a value), so a user's
script or log sees the cause on the line that says ``Error:``. :class:`OneLineCommand` keeps click's exception
(its type, the parameter it names, its exit status 2) and changes only how it is shown.
"""

from __future__ import annotations

from typing import IO, Any

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class OneLineCommand(click.Command):
    """A click command whose usage errors (an unknown option, a bad or missing value, a wrong combination
    raised as ``click.UsageError`` while it runs) show as one line: ``Error: <click's message> (see
    '<command> --help')``."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise one_line(exc, info_name or self.name or "")

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise one_line(exc, ctx.command_path)


def one_line(exc: click.UsageError, command: str) -> click.UsageError:
    """``exc``, shown as one line naming ``command``'s help (the command as typed: its context's path)."""
    path = exc.ctx.command_path if exc.ctx is not None else command

    def show(file: IO[Any] | None = None) -> None:
        message = " ".join(exc.format_message().split())  # one line whatever the message holds
        click.echo(f"Error: {message} (see '{path} --help')", file=file, err=True)

    exc.show = show  # type: ignore[method-assign]
    return exc
