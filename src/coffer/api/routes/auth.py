"""``/api/v1/auth``: log in (CLI token or browser session cookie), log out, change the
password; and accepting an invitation."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from coffer.api.context import SESSION_COOKIE, BlockingRunner, Caller, Run, ServicesDep
from coffer.api.serialize import iso, issued_json
from coffer.domain.hosts import is_loopback_host

router = APIRouter(prefix="/api/v1", tags=["auth"])


class Login(BaseModel):
    """E-mail and password, the TOTP (or recovery) code when the account has MFA, and what
    to receive: a CLI ``token`` (default) or a browser ``session`` cookie."""

    email: str = Field(max_length=1024)
    password: str = Field(max_length=4096, repr=False)
    totp: str | None = Field(default=None, max_length=64, repr=False)
    mode: Literal["token", "session"] = "token"
    name: str | None = Field(default=None, max_length=128)
    expires_in: str | None = Field(default=None, max_length=32)


class PasswordChange(BaseModel):
    """The current password and the new one (at least 12 characters)."""

    current_password: str = Field(max_length=4096, repr=False)
    new_password: str = Field(max_length=4096, repr=False)


class InvitationAccept(BaseModel):
    """The invitation token and the new account's password."""

    token: str = Field(max_length=256, repr=False)
    password: str = Field(max_length=4096, repr=False)


def _client(request: Request) -> tuple[str | None, str | None]:
    return (
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
    )


@router.post("/auth/login")
async def login(
    body: Login, request: Request, response: Response, services: ServicesDep
) -> dict[str, Any]:
    """Checks e-mail and password (and TOTP code). ``mode=token`` returns a CLI token in the
    body (default lifetime 90 days, ``expires_in`` such as ``30d``); ``mode=session`` sets an
    ``HttpOnly``, ``SameSite=Lax`` session cookie (``Secure`` outside loopback) instead.
    Wrong e-mail and wrong password give the same 401."""
    source_ip, user_agent = _client(request)
    result = await BlockingRunner.in_thread(
        services.login.login,
        body.email,
        body.password,
        totp_code=body.totp,
        session=body.mode == "session",
        token_name=body.name,
        ttl=body.expires_in,
        source_ip=source_ip,
        user_agent=user_agent,
    )
    identity = {"email": result.email, "role": result.role.value, "org_id": result.org_id}
    info = result.issued.info
    if body.mode == "session":
        response.set_cookie(
            SESSION_COOKIE,
            result.issued.token,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https" or not is_loopback_host(request.url.hostname),
            path="/",
            max_age=int(info.expires_at - info.created_at) if info.expires_at else None,
        )
        return {
            "identity": identity,
            "session_id": info.id,
            "expires_at": iso(info.expires_at or 0),
        }
    return {"identity": identity, **issued_json(result.issued)}


@router.post("/auth/logout")
async def logout(
    caller: Caller, response: Response, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Revokes the token or session used for this request and clears the session cookie."""
    await run(services.login.logout, caller)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"revoked": True, "token_id": caller.actor.token_id}


@router.post("/auth/password")
async def change_password(
    body: PasswordChange, caller: Caller, services: ServicesDep
) -> dict[str, Any]:
    """Changes the caller's password; every other session and CLI token of theirs is revoked."""
    revoked = await BlockingRunner.in_thread(
        services.login.change_password, caller, body.current_password, body.new_password
    )
    return {"changed": True, "sessions_revoked": revoked}


@router.post("/invitations/accept", status_code=201)
async def accept_invitation(
    body: InvitationAccept, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Creates the invited person's account (no token needed: the invitation is the
    credential). Log in afterwards."""
    source_ip, user_agent = _client(request)
    user = await BlockingRunner.in_thread(
        services.login.accept_invitation,
        body.token,
        body.password,
        source_ip=source_ip,
        user_agent=user_agent,
    )
    return {"email": user.email, "role": user.role.value, "org_id": user.org_id}
