"""``/api/v1/compliance``: issue 9 (compliance). Placeholder router, filled in by issue 9's work."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/compliance", tags=["compliance"])
