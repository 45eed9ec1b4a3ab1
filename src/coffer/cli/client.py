"""The CLI's HTTP client for the coffer API. Server errors come back as ``CofferError``s.

Credentials (tokens, passwords, invitations) travel only over HTTPS, or over plain HTTP to
this machine's loopback interface: the client refuses to be built for anything else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from coffer import __version__
from coffer.cli.settings_file import ClientSettings
from coffer.domain import errors as err
from coffer.domain.hosts import is_loopback_host

_BY_CODE: dict[str, type[err.CofferError]] = {
    cls.code: cls
    for cls in (
        err.InvalidInput,
        err.InvalidQuery,
        err.TooLarge,
        err.Unauthenticated,
        err.MfaRequired,
        err.AccessDenied,
        err.ReasonRequired,
        err.ApprovalRequired,
        err.PolicyViolation,
        err.RotationFailed,
        err.NotFound,
        err.Gone,
        err.Conflict,
        err.Contention,
        err.ConfigError,
        err.WrongRootKey,
        err.Sealed,
        err.Unavailable,
    )
}

# HEAD answers have no body: their status alone names the error family and the message
# ("{what}" is what the caller asked about).
_HEAD_ERRORS: dict[int, tuple[type[err.CofferError], str]] = {
    400: (err.InvalidInput, "the server refused to describe {what} (HTTP 400)"),
    401: (
        err.Unauthenticated,
        "the server refused the token (HTTP 401): it may have expired or been revoked; "
        "run `coffer login`",
    ),
    403: (err.AccessDenied, "not allowed to see {what} (HTTP 403)"),
    404: (err.NotFound, "{what} not found"),
}


def path_part(name: str) -> str:
    """Quotes one path segment (project, environment); a key keeps its "/" separators."""
    return quote(name, safe="")


def key_part(key: str) -> str:
    """Quotes a secret key for the URL, keeping "/" so folders map to path segments."""
    return quote(key, safe="/")


def check_transport(addr: str) -> None:
    """Raises ConfigError unless ``addr`` is an https:// URL, or an http:// URL of this
    machine's loopback interface: anything else would send credentials in clear text."""
    try:
        url = httpx.URL(addr)
    except httpx.InvalidURL as exc:
        raise err.ConfigError(f"the server address {addr!r} is not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise err.ConfigError(
            f"the server address {addr!r} must start with https:// (or http:// for localhost)"
        )
    if url.scheme == "http" and not is_loopback_host(url.host):
        raise err.ConfigError(
            f"refusing to send credentials over plain http:// to {url.host}: use https:// "
            "(plain http is allowed only to localhost, 127.0.0.0/8 and ::1)"
        )


def _verify(ca_cert: str | None) -> Any:
    """Returns httpx's ``verify``: True (system CAs), or a context trusting COFFER_CA_CERT."""
    if not ca_cert:
        return True
    import ssl

    try:
        return ssl.create_default_context(cafile=ca_cert)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise err.ConfigError(
            f"COFFER_CA_CERT: cannot load the CA bundle {ca_cert} ({reason})"
        ) from None


def _retry_after(response: httpx.Response) -> int:
    try:
        return max(1, int(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1


class ApiClient:
    """Calls ``/api/v1`` with the bearer token; raises the server's error as a CofferError.
    Raises ConfigError at construction when the address would expose credentials."""

    def __init__(self, settings: ClientSettings, *, timeout: float = 30.0) -> None:
        check_transport(settings.addr)
        self._settings = settings
        self._http = httpx.Client(
            base_url=settings.addr,
            headers={"User-Agent": f"coffer-cli/{__version__}"},
            timeout=timeout,
            verify=_verify(settings.ca_cert),
        )

    @property
    def addr(self) -> str:
        """The server's base URL."""
        return self._settings.addr

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        authenticated: bool = True,
    ) -> httpx.Response:
        """Sends one request (with the bearer token unless ``authenticated`` is False);
        returns the response when 2xx, raises CofferError otherwise."""
        headers = self._auth_headers() if authenticated else {}
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.is_success:
            return response
        raise self._error(response)

    def head(self, path: str, *, what: str, authenticated: bool = True) -> httpx.Response:
        """Sends ``HEAD path`` and returns the response when 2xx or 410 Gone (a sealed secret
        still describes itself in its headers). A HEAD answer has no body to carry the
        server's message: any other status raises the CofferError of its family with a
        message naming ``what`` (404: "``what`` not found")."""
        headers = self._auth_headers() if authenticated else {}
        try:
            response = self._http.request("HEAD", path, headers=headers)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.is_success or response.status_code == 410:
            return response
        status = response.status_code
        if status == 429:
            seconds = _retry_after(response)
            raise err.RateLimited(f"too many requests (retry in {seconds} s)", retry_after=seconds)
        family, message = _HEAD_ERRORS.get(
            status, (err.CofferError, f"server answered HTTP {status}")
        )
        raise family(message.format(what=what))

    def stream(self, path: str, params: dict[str, Any] | None = None) -> Iterator[bytes]:
        """Yields the body of an authenticated ``GET path`` as it arrives, for downloads
        larger than memory should hold. Raises the server's error as a CofferError before
        yielding anything, and ServerUnreachable when the transfer breaks off."""
        headers = self._auth_headers()
        try:
            with self._http.stream("GET", path, params=params, headers=headers) as response:
                if not response.is_success:
                    response.read()
                    raise self._error(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _auth_headers(self) -> dict[str, str]:
        if not self._settings.token:
            raise err.Unauthenticated(
                "no token: run `coffer login --email EMAIL` (or --token TOKEN) or set COFFER_TOKEN"
            )
        return {"Authorization": f"Bearer {self._settings.token}"}

    def _unreachable(self, exc: httpx.TransportError) -> err.ServerUnreachable:
        reason = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        return err.ServerUnreachable(
            f"cannot reach the coffer server at {self._settings.addr} ({reason}); "
            "is it running? COFFER_ADDR sets the address"
        )

    @staticmethod
    def _error(response: httpx.Response) -> err.CofferError:
        try:
            body = response.json()["error"]
            code, message, field = body["code"], body["message"], body.get("field")
        except (ValueError, KeyError, TypeError):
            code, message, field = "", f"server answered HTTP {response.status_code}", None
        if code == err.RateLimited.code or response.status_code == 429:
            seconds = _retry_after(response)
            if "retry" not in message:
                message = f"{message} (retry in {seconds} s)"
            return err.RateLimited(message, retry_after=seconds, field=field)
        return _BY_CODE.get(code, err.CofferError)(message, field=field)

    def get_json(self, path: str, **params: Any) -> Any:
        """GET returning the decoded JSON body."""
        return self.request("GET", path, params=params or None).json()

    def send_json(self, method: str, path: str, body: Any, *, authenticated: bool = True) -> Any:
        """POST/PUT/PATCH/DELETE with a JSON body, returning the decoded answer (None for
        204)."""
        response = self.request(method, path, json=body, authenticated=authenticated)
        return None if response.status_code == 204 else response.json()
