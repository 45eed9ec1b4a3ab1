"""``/api/v1/access-requests``: access requests (issue 9)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/access-requests", tags=["access requests"])
