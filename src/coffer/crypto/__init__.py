"""coffer.crypto."""
