"""The secret scanner: finds credentials in files, git history, staged changes and standard input.

It stands alone: it may use ``coffer.domain`` (errors, ``SecretValue``) and ``coffer.crypto``
(coffer's token checksum, keyed fingerprints) but nothing from the server side.

- ``rules``: rules kept in TOML data files (``rule_data/``) and loaded into a ``RuleSet``.
- ``engine``: Hyperscan finds which rules may match a buffer; Python's ``re`` confirms and locates.
- ``filters``: false-positive filters (placeholders, examples, environment lookups, ...).
- ``checksums``: offline verification of checksummed token formats.
- ``findings``: the ``Finding`` a scan reports, with a masked ``repr``.
"""
