"""Helpers for the authentication tests: test keys, token minting, issuers files.

Keys are generated once per test session (RSA generation is the slow part).
"""

from __future__ import annotations

import base64
import functools
import json
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, get_default_algorithms

ISS = "https://ehr.test.example/cds-client"
BASE = "https://cds.example.org"
SERVICE_URL = f"{BASE}/cds-services/calciphylaxis-patient-view"
NOW = 1_790_000_000  # a fixed "now" (2026-09) for the authenticator's clock


def ec_key(name: str = "ec") -> ec.EllipticCurvePrivateKey:
    """The P-384 test key called ``name`` (the same object for the same name)."""
    return _ec_key(name)


def rsa_key(name: str = "rsa", bits: int = 2048) -> rsa.RSAPrivateKey:
    return _rsa_key(name, bits)


@functools.cache
def _ec_key(name: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@functools.cache
def _rsa_key(name: str, bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_jwk(private_key, kid: str, alg: str | None = None) -> dict[str, Any]:
    codec = ECAlgorithm if isinstance(private_key, ec.EllipticCurvePrivateKey) else RSAAlgorithm
    jwk = json.loads(codec.to_jwk(private_key.public_key()))
    jwk.update(kid=kid, use="sig")
    if alg:
        jwk["alg"] = alg
    return jwk


def jwks(*keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(keys)}


def claims(aud: str | list[str] = SERVICE_URL, now: float = NOW, **overrides: Any) -> dict[str, Any]:
    """Valid CDS Hooks claims; an override of None drops the claim."""
    values = {"iss": ISS, "aud": aud, "iat": int(now), "exp": int(now) + 300, "jti": str(uuid.uuid4())}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], key: Any = None) -> str:
    """Build a JWS by hand, so tests can make tokens a well-behaved library refuses to make
    (alg none, HMAC keyed with a public key, missing typ ...)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    alg = header.get("alg")
    if alg == "none":
        return signing_input + "."
    signature = get_default_algorithms()[alg].sign(signing_input.encode(), key)
    return f"{signing_input}.{_b64(signature)}"


def sign(key, payload: dict[str, Any], *, alg: str = "ES384", kid: str | None = "ec-1", **header: Any) -> str:
    full = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid is not None else {}), **header}
    return raw_token({k: v for k, v in full.items() if v is not None}, payload, key)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def write_issuers(directory: Path, *issuers: dict[str, Any], name: str = "issuers.json") -> Path:
    path = directory / name
    path.write_text(json.dumps({"issuers": list(issuers)}), encoding="utf-8")
    return path


def default_issuer(**overrides: Any) -> dict[str, Any]:
    """The test EHR: one EC P-384 key (kid ec-1) and one RSA key (kid rsa-1), inline."""
    issuer = {
        "iss": ISS,
        "jwks": jwks(public_jwk(ec_key(), "ec-1", "ES384"), public_jwk(rsa_key(), "rsa-1")),
    }
    issuer.update(overrides)
    return issuer


def pyjwt_sign(key, payload: dict[str, Any], *, alg: str, kid: str) -> str:
    """Sign with PyJWT itself (proves interoperability with a mainstream client library)."""
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})
