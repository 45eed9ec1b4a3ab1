"""Root key providers: where the root of the key hierarchy lives (a key file, Shamir shares,
an HSM through PKCS#11, AWS KMS) and how each turns a stored generation into the
key-encryption key, which lives in memory only."""
