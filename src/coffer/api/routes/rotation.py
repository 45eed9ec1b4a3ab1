"""``/api/v1/rotation``: issue 9 (rotation). Placeholder router, filled in by issue 9's work."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/rotation", tags=["rotation"])
