"""``/api/v1/access-reviews``: access reviews (issue 9)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/access-reviews", tags=["access reviews"])
