"""The CLI's HTTP client for the coffer API. Server errors come back as ``CofferError``s."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from coffer import __version__
from coffer.cli.settings_file import ClientSettings
from coffer.domain import errors as err

_BY_CODE: dict[str, type[err.CofferError]] = {
    cls.code: cls
    for cls in (
        err.InvalidInput,
        err.TooLarge,
        err.Unauthenticated,
        err.AccessDenied,
        err.NotFound,
        err.Conflict,
        err.ConfigError,
    )
}


def path_part(name: str) -> str:
    """Quotes one path segment (project, environment); a key keeps its "/" separators."""
    return quote(name, safe="")


def key_part(key: str) -> str:
    """Quotes a secret key for the URL, keeping "/" so folders map to path segments."""
    return quote(key, safe="/")


class ApiClient:
    """Calls ``/api/v1`` with the bearer token; raises the server's error as a CofferError."""

    def __init__(self, settings: ClientSettings, *, timeout: float = 30.0) -> None:
        self._settings = settings
        headers = {"User-Agent": f"coffer-cli/{__version__}"}
        if settings.token:
            headers["Authorization"] = f"Bearer {settings.token}"
        self._http = httpx.Client(base_url=settings.addr, headers=headers, timeout=timeout)

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
    ) -> httpx.Response:
        """Sends one request; returns the response when 2xx, raises CofferError otherwise."""
        if not self._settings.token:
            raise err.Unauthenticated(
                "no token: run `coffer login --token TOKEN` or set COFFER_TOKEN"
            )
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            reason = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
            raise err.ServerUnreachable(
                f"cannot reach the coffer server at {self._settings.addr} ({reason}); "
                "is it running? COFFER_ADDR sets the address"
            ) from None
        if response.is_success:
            return response
        raise self._error(response)

    @staticmethod
    def _error(response: httpx.Response) -> err.CofferError:
        try:
            body = response.json()["error"]
            code, message, field = body["code"], body["message"], body.get("field")
        except (ValueError, KeyError, TypeError):
            return err.CofferError(f"server answered HTTP {response.status_code}")
        return _BY_CODE.get(code, err.CofferError)(message, field=field)

    def get_json(self, path: str, **params: Any) -> Any:
        """GET returning the decoded JSON body."""
        return self.request("GET", path, params=params or None).json()

    def send_json(self, method: str, path: str, body: Any) -> Any:
        """POST/PUT returning the decoded JSON body (None for 204)."""
        response = self.request(method, path, json=body)
        return None if response.status_code == 204 else response.json()
