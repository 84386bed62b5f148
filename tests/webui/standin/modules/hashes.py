"""Mirrors modules/hashes.py (v1.10.1): sha256 of a file. Left out: the hash cache file."""
import hashlib


def sha256(filename, title, use_addnet_hash=False):
    h = hashlib.sha256()
    with open(filename, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
