"""coffer: a self-hosted secrets manager whose audit trail an auditor can verify."""

__version__ = "0.1.0"
