"""``/api/v1/members``: issue 9 (team). Placeholder router, filled in by issue 9's work."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/members", tags=["team"])
