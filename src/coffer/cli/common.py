"""Options shared by every command and the error boundary that turns errors into exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from coffer.domain.errors import CofferError

if TYPE_CHECKING:
    from coffer.cli.client import ApiClient

P = ParamSpec("P")
R = TypeVar("R")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="Project name.")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment name.")]
AddrOpt = Annotated[
    str | None,
    typer.Option("--addr", help="Server address (default: COFFER_ADDR or the saved one)."),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ExpiresOpt = Annotated[
    str | None, typer.Option("--expires", help="Lifetime such as 30m, 12h or 30d.")
]


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Runs a command; a CofferError prints ``error: ...`` (or JSON with --json) to stderr and
    exits with the family's code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from coffer.cli.exit_codes import exit_code_for

        try:
            return func(*args, **kwargs)
        except CofferError as exc:
            if kwargs.get("as_json"):
                import json

                sys.stderr.write(json.dumps({"error": exc.to_dict()}) + "\n")
            else:
                field = f" [{exc.field}]" if exc.field else ""
                sys.stderr.write(f"error{field}: {exc.message}\n")
            raise typer.Exit(exit_code_for(exc)) from None

    return wrapper


def api() -> ApiClient:
    """Returns an API client configured from the environment or `coffer login`."""
    from coffer.cli.client import ApiClient
    from coffer.cli.settings_file import load_client_settings

    return ApiClient(load_client_settings())


def anonymous_api(addr: str | None = None) -> ApiClient:
    """Returns an API client without a token, for the calls that come before one (log in,
    accept an invitation): the address is ``addr``, else COFFER_ADDR or the saved one."""
    from dataclasses import replace

    from coffer.cli.client import ApiClient
    from coffer.cli.settings_file import load_client_settings

    settings = load_client_settings()
    return ApiClient(replace(settings, addr=(addr or settings.addr).rstrip("/"), token=None))
