# -*- coding: utf-8 -*-
# Copyright: mlops-stack developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The TLS settings every TLS listener of the collection shares.

tls_profile: one of Mozilla's server-side TLS profiles, by name, as the lists
HAProxy's settings take (the gateway and MLflow's TLS front render them), so a
change of the profile reaches both listeners at once.
"""

from __future__ import annotations

from typing import Any

# Mozilla "intermediate" (https://wiki.mozilla.org/Security/Server_Side_TLS):
# TLS 1.2 and 1.3, only the ECDHE AEAD suites of TLS 1.2 (no DHE: it needs
# parameters and adds nothing here), TLS 1.3's suites, and the key exchange
# groups (OpenSSL's default list adds secp521r1 and X448, which sslyze flags).
PROFILES: dict[str, dict[str, Any]] = {
    "intermediate": {
        "min_version": "TLSv1.2",
        "tls12_ciphers": [
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "ECDHE-RSA-CHACHA20-POLY1305",
        ],
        "tls13_ciphersuites": [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
        ],
        "curves": ["X25519", "prime256v1", "secp384r1"],
    },
}


def tls_profile(name: str) -> dict[str, Any]:
    """Mozilla's profile ``name``: min_version, tls12_ciphers, tls13_ciphersuites, curves.

    A copy: a caller that changes it changes nothing for the others."""
    try:
        profile = PROFILES[str(name)]
    except KeyError:
        raise ValueError(
            f"unknown TLS profile {name!r}; known: {', '.join(sorted(PROFILES))}"
        ) from None
    return {k: list(v) if isinstance(v, list) else v for k, v in profile.items()}


class FilterModule:
    """TLS filters of mlops.stack."""

    def filters(self) -> dict[str, Any]:
        return {"tls_profile": tls_profile}
