"""Authentication over real sockets: fail closed, 4401, user id only from the token."""

from __future__ import annotations

import time

import jwt
import pytest
import websockets

from runwire.auth import Authenticator
from runwire.client import Client
from runwire.exceptions import AuthError, ConnectionClosed
from tests.helpers import SECRET, connect, make_settings, running_gateway, token_for


def _token(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def _valid_claims(**extra: object) -> dict[str, object]:
    return {"sub": "alice", "exp": int(time.time()) + 60, **extra}


BAD_TOKENS = {
    "forged": _token(_valid_claims(), key="another-secret-" + "y" * 40),
    "expired": _token({"sub": "alice", "exp": int(time.time()) - 10}),
    "no_exp": _token({"sub": "alice"}),
    "no_sub": _token({"exp": int(time.time()) + 60}),
    "alg_none": jwt.encode(_valid_claims(), "", algorithm="none"),
    "wrong_alg": _token(_valid_claims(), algorithm="HS512"),
    "garbage": "not.a.jwt",
    "empty_sub": _token(_valid_claims(sub="")),
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
async def test_bad_tokens_close_with_4401(name: str) -> None:
    async with running_gateway() as gateway:
        with pytest.raises(ConnectionClosed) as closed:
            async with Client.connect(gateway.ws_url, BAD_TOKENS[name]):
                pass
        assert closed.value.code == 4401
        assert gateway.manager.connection_count == 0


async def test_missing_token_closes_with_4401() -> None:
    async with running_gateway() as gateway:
        async with websockets.connect(gateway.ws_url, subprotocols=["runwire.v1"]) as socket:  # type: ignore[list-item]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await socket.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert closed.value.rcvd.reason == "missing token"


async def test_authorization_header_is_accepted() -> None:
    async with running_gateway() as gateway:
        token = token_for(gateway.settings, "carol")
        async with Client.connect(gateway.ws_url, token, header_auth=True) as client:
            assert client.connected["user_id"] == "carol"


async def test_the_subprotocol_runwire_v1_is_selected() -> None:
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        assert client.socket.subprotocol == "runwire.v1"


async def test_a_token_never_appears_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    forged = BAD_TOKENS["forged"]
    async with running_gateway() as gateway:
        with pytest.raises(ConnectionClosed):
            async with Client.connect(gateway.ws_url, forged):
                pass
        async with connect(gateway, "alice") as client:
            await client.ping()
    assert "connection refused: invalid token" in caplog.text
    assert forged not in caplog.text
    assert forged.split(".")[1] not in caplog.text


def test_issuer_and_audience_are_enforced() -> None:
    settings = make_settings(auth_issuer="https://idp", auth_audience="runwire")
    authenticator = Authenticator(settings)
    good = _token(_valid_claims(iss="https://idp", aud="runwire"))
    assert authenticator.verify(good) == "alice"
    for claims in (
        _valid_claims(iss="https://evil", aud="runwire"),
        _valid_claims(iss="https://idp", aud="other"),
        _valid_claims(),
    ):
        with pytest.raises(AuthError, match="invalid token"):
            authenticator.verify(_token(claims))


def test_rs256_tokens_verify_against_the_public_key() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    authenticator = Authenticator(
        make_settings(auth_algorithm="RS256", auth_public_key=public_pem, auth_secret=None)
    )
    assert authenticator.verify(_token(_valid_claims(), key=key, algorithm="RS256")) == "alice"  # type: ignore[arg-type]
    # An HS256 token signed with the public key as secret (algorithm confusion) fails.
    with pytest.raises(AuthError):
        authenticator.verify(_token(_valid_claims()))
