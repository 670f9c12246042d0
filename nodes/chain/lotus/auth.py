"""Lotus API tokens: HS256 JWTs whose payload is {"Allow": [permissions]}, as `lotus auth
create-token` makes them. A token made for a permission allows it and every lesser one
(read < write < sign < admin). As Lotus: a request without a token may read; a token that
does not verify is refused with HTTP 401."""
from __future__ import annotations

import secrets
from pathlib import Path

import jwt

from zqnode.nodes.chain.lotus.methods import PERMISSIONS, READ
from zqnode.proofs.files import write_atomic

SECRET_FILE = "lotus-jwt-secret"     # in the chain node's repo, 0600
TOKEN_FILE = "lotus-token"           # the admin token, in the repo (Lotus: ~/.lotus/token)
MAX_TOKEN = 4096


class TokenError(ValueError):
    """A token that is not one of ours."""


class Tokens:
    def __init__(self, secret: bytes):
        if len(secret) < 32:
            raise ValueError("a token secret is at least 32 bytes")
        self._secret = secret

    @classmethod
    def in_repo(cls, repo, token_path=None) -> "Tokens":
        """The repo's secret (made on first use), and an admin token written to
        `token_path` (default: REPO/lotus-token)."""
        repo = Path(repo)
        path = repo / SECRET_FILE
        if not path.exists():
            write_atomic(path, secrets.token_bytes(32), mode=0o600)
        tokens = cls(path.read_bytes())
        write_atomic(Path(token_path or repo / TOKEN_FILE), tokens.create("admin").encode(), mode=0o600)
        return tokens

    def create(self, perm: str) -> str:
        """A token allowing `perm` and the permissions below it."""
        if perm not in PERMISSIONS:
            raise TokenError(f"unknown permission {perm!r} (one of {', '.join(PERMISSIONS)})")
        allow = list(PERMISSIONS[:PERMISSIONS.index(perm) + 1])
        return jwt.encode({"Allow": allow}, self._secret, algorithm="HS256")

    def verify(self, token: str) -> frozenset[str]:
        """The permissions a token allows, or TokenError."""
        if len(token) > MAX_TOKEN:
            raise TokenError("token too long")
        try:
            payload = jwt.decode(token, self._secret, algorithms=["HS256"])
        except jwt.PyJWTError as e:
            raise TokenError(f"JWT verification failed: {e}") from None
        allow = payload.get("Allow") if isinstance(payload, dict) else None
        if not isinstance(allow, list) or not all(p in PERMISSIONS for p in allow):
            raise TokenError("the token's Allow is not a list of permissions")
        return frozenset(allow)


def permissions_of(header: str | None, query_token: str | None, tokens: Tokens) -> frozenset[str]:
    """The permissions of a request from its Authorization header (or ?token=): no token
    reads; anything else must be "Bearer <a token of ours>" (TokenError: answer 401)."""
    token = header or (f"Bearer {query_token}" if query_token else None)
    if token is None:
        return frozenset({READ})
    if not token.startswith("Bearer "):
        raise TokenError("missing Bearer prefix in auth header")
    return tokens.verify(token[len("Bearer "):])


def allowed(perms: frozenset[str], needed: str) -> bool:
    return needed in perms

