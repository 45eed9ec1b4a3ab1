"""Reading Shamir shares for a local operator command on a vault with a split root key."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from coffer.domain.errors import InvalidInput

if TYPE_CHECKING:
    from coffer.crypto.providers.shamir import UnsealProgress


def share_reader() -> Callable[[UnsealProgress], str]:
    """Asks for shares only when the vault needs them: a prompt without echo on a terminal,
    else one share per line of standard input. Raises InvalidInput (field ``share``) when
    standard input ends before enough shares."""
    if sys.stdin.isatty():

        def prompt(progress: UnsealProgress) -> str:
            needed = f" of {progress.threshold}" if progress.threshold else ""
            label = f"Root key share {progress.received + 1}{needed}"
            answer: str = typer.prompt(label, hide_input=True, err=True)
            return answer

        return prompt
    lines = (line for line in sys.stdin if line.strip())

    def next_line(progress: UnsealProgress) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise InvalidInput(
                f"standard input ended after {progress.received} shares; "
                f"{progress.threshold or 'more'} are needed",
                field="share",
            ) from None

    return next_line
