"""mlops.stack.client_key_hash: what the gateway stores of a client key."""

from __future__ import annotations

import hashlib

import pytest
from ansible_collections.mlops.stack.plugins.filter import client_keys


def test_a_key_given_in_clear_becomes_its_sha256() -> None:
    key = "a-client-key-of-some-length"
    assert (
        client_keys.client_key_hash({"name": "ci", "key": key})
        == hashlib.sha256(key.encode()).hexdigest()
    )


def test_a_given_hash_is_kept_lowercased() -> None:
    digest = hashlib.sha256(b"elsewhere").hexdigest()
    assert client_keys.client_key_hash({"name": "ci", "sha256": digest.upper()}) == digest


def test_an_entry_without_key_or_hash_names_the_client() -> None:
    with pytest.raises(ValueError, match="'ci' has neither key nor sha256"):
        client_keys.client_key_hash({"name": "ci"})
