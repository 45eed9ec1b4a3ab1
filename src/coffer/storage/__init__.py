"""coffer.storage."""
