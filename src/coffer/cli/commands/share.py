"""``coffer share``: one-time links to a value, encrypted here before it leaves the machine.

``coffer share VALUE`` seals the value under a fresh key, stores only the ciphertext and a
proof of the key, and prints ``<server>/s/<token>#<key>``: the key travels in the fragment,
which browsers never send, so the server can never read a share. ``coffer share get LINK``
(no login needed) presents the proof to the link's own server, counts one read and opens the
ciphertext here.
"""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from typer.core import TyperGroup

from coffer.cli.client import path_part
from coffer.cli.commands.secrets import (
    NoDeleteOpt,
    ReadsOpt,
    describe_limits,
    limit_fields,
    read_value,
)
from coffer.cli.common import JsonOpt, anonymous_api, api, handle_errors
from coffer.cli.output import emit, print_json
from coffer.domain.errors import InvalidInput

SHARE_PREFIX = "/s/"
_LINK_SHAPE = "a share link looks like https://HOST/s/TOKEN#KEY"


class ShareGroup(TyperGroup):
    """``coffer share``'s commands, where ``create`` is the default: any first argument that
    is not a command name (``get``, ``create``) or ``--help`` is ``create``'s, so
    ``coffer share VALUE`` and ``coffer share get LINK`` both work."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Puts ``create`` in front of arguments that do not start with a command name.
        (``ctx`` is the click context of the click that typer bundles, whose module typer
        keeps private; hence ``Any``.)"""
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["create", *args]
        return super().parse_args(ctx, args)


share_app = typer.Typer(
    cls=ShareGroup,
    help="Share a value through a link that opens once (or --reads N times), encrypted here. "
    "`coffer share VALUE` creates a link, `coffer share get LINK` opens one.",
    no_args_is_help=False,
)


@share_app.command("create")
@handle_errors
def create(
    value: Annotated[
        str | None,
        typer.Argument(
            help="The value, or - to read it from stdin (a terminal asks when omitted).",
            show_default=False,
        ),
    ] = None,
    ttl: Annotated[
        str | None,
        typer.Option("--ttl", help="Time to live: seconds or 30s, 5m, 2h, 7d (default 1 day)."),
    ] = None,
    reads: ReadsOpt = None,
    no_delete: NoDeleteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a share link (the default: coffer share VALUE). It opens once unless --reads;
    the link goes to stdout, what it allows to stderr."""
    from coffer.crypto.share_cipher import decode_share_key, seal_share, share_proof

    plaintext = read_value(value).encode("utf-8")
    key_text, envelope = seal_share(plaintext)
    body: dict[str, Any] = {
        "ciphertext": base64.b64encode(envelope).decode("ascii"),
        "proof": share_proof(decode_share_key(key_text)),
    }
    body.update(limit_fields(ttl, reads, no_delete))
    with api() as client:
        data = client.send_json("POST", "/api/v1/shares", body)
        link = f"{client.addr.rstrip('/')}{data['path']}#{key_text}"
    if as_json:
        print_json({"link": link, **data})
        return
    sys.stdout.write(link + "\n")
    sys.stderr.write(
        f"Share link: {describe_limits(data['limits'])}. Send the whole link: the key is the "
        "part after '#', which the server never sees.\n"
    )


@dataclass(frozen=True)
class ShareLink:
    """A parsed share link: the server's base URL, the token and the key's text."""

    base: str
    token: str
    key_text: str


def parse_link(link: str) -> ShareLink:
    """Returns the parts of ``<base>/s/<token>#<key>``. Raises InvalidInput naming ``link``
    when it is not such a link, or its key (the fragment) is missing or malformed."""
    from coffer.crypto.share_cipher import decode_share_key
    from coffer.domain.errors import DecryptionFailed

    parts = urlsplit(link.strip())
    base_path, prefix, token = parts.path.rpartition(SHARE_PREFIX)
    if parts.scheme not in ("http", "https") or not parts.netloc or not prefix:
        raise InvalidInput(f"not a share link: {_LINK_SHAPE}", field="link")
    if not token or "/" in token:
        raise InvalidInput(f"the link has no token after /s/: {_LINK_SHAPE}", field="link")
    if not parts.fragment:
        raise InvalidInput(
            "the link has no key: the part after '#' is missing; copy the whole link",
            field="link",
        )
    try:
        decode_share_key(parts.fragment)
    except DecryptionFailed:
        raise InvalidInput(
            "the link's key (the part after '#') is malformed; copy the whole link",
            field="link",
        ) from None
    return ShareLink(f"{parts.scheme}://{parts.netloc}{base_path}", token, parts.fragment)


@share_app.command("get")
@handle_errors
def get(
    link: Annotated[str, typer.Argument(help="The whole link, https://HOST/s/TOKEN#KEY.")],
    as_json: JsonOpt = False,
) -> None:
    """Open a share link and print its value; counts one read (no login needed)."""
    from coffer.crypto.share_cipher import decode_share_key, open_share, share_proof

    parsed = parse_link(link)
    proof = share_proof(decode_share_key(parsed.key_text))
    path = f"/api/v1/shares/{path_part(parsed.token)}/reveal"
    with anonymous_api(parsed.base) as client:
        data = client.send_json("POST", path, {"proof": proof}, authenticated=False)
    envelope = base64.b64decode(data["ciphertext"])
    value = open_share(parsed.key_text, envelope).decode("utf-8")
    emit({"value": value, "limits": data["limits"]}, as_json, value)
