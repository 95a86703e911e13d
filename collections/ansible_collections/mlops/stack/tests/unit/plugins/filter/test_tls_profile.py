"""mlops.stack.tls_profile: the one TLS profile of the gateway and MLflow's TLS front."""

from __future__ import annotations

import pytest
from ansible_collections.mlops.stack.plugins.filter import tls


def test_intermediate_is_mozillas_ecdhe_aead_profile() -> None:
    profile = tls.tls_profile("intermediate")
    assert profile["min_version"] == "TLSv1.2"
    # forward secrecy and AEAD only: no RSA key exchange, no DHE, no CBC
    assert all(c.startswith("ECDHE-") for c in profile["tls12_ciphers"])
    assert all("GCM" in c or "CHACHA20-POLY1305" in c for c in profile["tls12_ciphers"])
    assert set(profile["tls13_ciphersuites"]) == {
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    }
    # the groups sslyze accepts for the profile (no secp521r1, no X448)
    assert profile["curves"] == ["X25519", "prime256v1", "secp384r1"]


def test_each_call_returns_a_copy() -> None:
    first = tls.tls_profile("intermediate")
    first["curves"].append("X448")
    assert "X448" not in tls.tls_profile("intermediate")["curves"]


def test_an_unknown_profile_is_named() -> None:
    with pytest.raises(ValueError, match=r"'modern'.*intermediate"):
        tls.tls_profile("modern")


def test_the_filter_is_registered() -> None:
    assert tls.FilterModule().filters()["tls_profile"] is tls.tls_profile
