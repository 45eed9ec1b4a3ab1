"""Plain data, rules and errors of coffer. No I/O and no third-party frameworks."""
