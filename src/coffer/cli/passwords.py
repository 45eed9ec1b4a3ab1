"""Reading passwords and codes: lines from stdin (``--password-stdin``) or a hidden prompt.

A password is never a command-line argument, where ``ps`` and shell history would keep it.
Without a terminal and without ``--password-stdin`` the CLI refuses rather than read stdin
behind the user's back.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from coffer.domain.errors import InvalidInput

PasswordStdinOpt = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from stdin (one line) instead of a prompt."
    ),
]


def interactive() -> bool:
    """True when stdin is a terminal, so the CLI may ask questions."""
    return sys.stdin.isatty()


def read_stdin_lines(count: int, *, field: str = "password") -> list[str]:
    """Returns ``count`` lines from stdin without their line endings. Raises InvalidInput
    naming ``field`` when stdin ends first."""
    lines: list[str] = []
    for _ in range(count):
        line = sys.stdin.readline()
        if not line:
            wanted = "one line" if count == 1 else f"{count} lines"
            raise InvalidInput(f"--password-stdin expects {wanted} on stdin", field=field)
        lines.append(line.removesuffix("\n").removesuffix("\r"))
    return lines


def ask_hidden(prompt: str, *, confirm: bool = False, field: str = "password") -> str:
    """Asks for a secret on the terminal without echo (twice with ``confirm``). Raises
    InvalidInput when there is no terminal to ask on."""
    if not interactive():
        raise InvalidInput(
            "stdin is not a terminal: pass the password on stdin with --password-stdin",
            field=field,
        )
    answer: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return answer


def read_password(from_stdin: bool, prompt: str = "Password") -> str:
    """Returns an existing password: one stdin line, or a hidden prompt."""
    return read_stdin_lines(1)[0] if from_stdin else ask_hidden(prompt)


def read_new_password(from_stdin: bool, prompt: str = "New password") -> str:
    """Returns a new password (one stdin line, or a hidden prompt asked twice), checked
    against the password rules before anything is sent. Raises InvalidInput naming the rule."""
    from coffer.domain.identity import validate_password

    password = read_stdin_lines(1)[0] if from_stdin else ask_hidden(prompt, confirm=True)
    return validate_password(password)
