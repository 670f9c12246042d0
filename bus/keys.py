"""CurveZMQ key files: a node's key pair, the hub's public key, the hub's allow-list.

In a node's key directory (its repo by default):

    node.key        the node's secret key, Z85, mode 0600 (never leaves the machine)
    node.pub        its public key, Z85: what the hub's operator allows
    hub.pub         the hub's public key, Z85 (a copy of the hub's node.pub)

In the hub's key directory, besides its own node.key / node.pub:

    allowed_keys    one key a line: PUBLIC-KEY ROLE [NAME]   ('#' starts a comment line)

A NAME pins the key to that node name: no other key may register it, and this key may
register no other. Roles are node roles (worker, scheduler, ...), `reader` (may connect,
watch events and call what is open to anyone) or `admin` (may call anything).
"""
from __future__ import annotations

import os
import pathlib
import re
import tempfile
from dataclasses import dataclass

import zmq
from zmq.utils import z85

from zqnode.bus.config import BusConfig

SECRET_FILE = "node.key"
PUBLIC_FILE = "node.pub"
HUB_FILE = "hub.pub"
ALLOW_FILE = "allowed_keys"

_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class KeyFileError(OSError, ValueError):
    """A key file that is missing, unreadable, too open or malformed; or a bad key."""


def check_public_key(text: str) -> str:
    """`text` as a Z85 public key (40 characters, 32 bytes), or KeyFileError."""
    key = text.strip()
    try:
        ok = len(key) == 40 and len(z85.decode(key.encode("ascii"))) == 32
    except (ValueError, UnicodeEncodeError, KeyError, IndexError):
        ok = False
    if not ok:
        raise KeyFileError(f"not a Z85 public key (40 characters): {text.strip()[:60]!r}")
    return key


def check_role(role: str) -> str:
    if not _ROLE.fullmatch(role or ""):
        raise KeyFileError(f"bad role {role!r}: lower-case letters, digits, '-' and '_'")
    return role


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise KeyFileError(f"bad node name {name!r}: letters, digits, '.', '-' and '_'")
    return name


# -- a node's key pair -------------------------------------------------------------------
def init_key_pair(key_dir, *, overwrite: bool = False) -> str:
    """Make a key pair in `key_dir` (created 0700); the secret file is 0600 from the
    moment it exists. Returns the public key. An existing pair is kept unless `overwrite`."""
    d = pathlib.Path(key_dir).expanduser()
    secret_path = d / SECRET_FILE
    if secret_path.exists() and not overwrite:
        raise KeyFileError(f"{secret_path} exists: keep it, or replace it on purpose (--force)")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    _write_atomic(secret_path, secret + b"\n", 0o600)
    _write_atomic(d / PUBLIC_FILE, public + b"\n", 0o644)
    return public.decode()


def read_key_pair(key_dir) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from `key_dir`. The secret file must be readable by its
    owner only (as ssh insists), and the public key must match it."""
    d = pathlib.Path(key_dir).expanduser()
    path = d / SECRET_FILE
    try:
        mode = path.stat().st_mode
        secret = path.read_text().strip()
    except FileNotFoundError:
        raise KeyFileError(f"no key pair in {d}: run `zqnode keys init --repo {d} ...` and allow "
                           f"its public key on the hub (`zqnode keys allow`)") from None
    except OSError as e:
        raise KeyFileError(f"cannot read {path}: {e.strerror}") from None
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by others (mode {mode & 0o777:o}): chmod 600 it")
    try:
        secret_b = check_public_key(secret).encode()   # the same Z85 shape as a public key
        public_b = zmq.curve_public(secret_b)
    except (KeyFileError, zmq.ZMQError, ValueError):
        raise KeyFileError(f"{path} does not hold a Z85 secret key") from None
    return public_b, secret_b


def read_public_key(path) -> str:
    p = pathlib.Path(path).expanduser()
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise KeyFileError(f"{p} is missing") from None
    except OSError as e:
        raise KeyFileError(f"cannot read {p}: {e.strerror}") from None
    try:
        return check_public_key(text)
    except KeyFileError as e:
        raise KeyFileError(f"{p}: {e}") from None


# -- the hub's allow-list ----------------------------------------------------------------
@dataclass(frozen=True)
class Allowed:
    key: str
    role: str
    name: str = ""           # "": the key may register any name not pinned or bound


class AllowList:
    """Public key -> (role, pinned name). Immutable; `with_key` / `without` make new ones."""

    def __init__(self, entries: list[Allowed] = ()):
        self.entries: dict[str, Allowed] = {}
        self._pinned: dict[str, str] = {}
        for e in entries:
            self.entries[e.key] = e
        for e in self.entries.values():
            if e.name:
                other = self._pinned.setdefault(e.name, e.key)
                if other != e.key:
                    raise KeyFileError(f"name {e.name!r} is pinned to two keys: {other} and {e.key}")

    def role_of(self, key: str) -> str | None:
        e = self.entries.get(key)
        return e.role if e is not None else None

    def pinned(self, name: str) -> str | None:
        """The key a name is pinned to, if any."""
        return self._pinned.get(name)

    def with_key(self, entry: Allowed) -> "AllowList":
        return AllowList([*(e for e in self.entries.values() if e.key != entry.key), entry])

    def without(self, key: str) -> "AllowList":
        if key not in self.entries:
            raise KeyFileError(f"key {key} is not on the allow-list")
        return AllowList([e for e in self.entries.values() if e.key != key])

    @classmethod
    def parse(cls, text: str, source: str = "allow-list") -> "AllowList":
        entries = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            try:
                if len(parts) not in (2, 3):
                    raise KeyFileError("expected PUBLIC-KEY ROLE [NAME]")
                entries.append(Allowed(check_public_key(parts[0]), check_role(parts[1]),
                                       check_name(parts[2]) if len(parts) == 3 else ""))
            except KeyFileError as e:
                raise KeyFileError(f"{source} line {n}: {e}") from None
        return cls(entries)

    @classmethod
    def load(cls, path) -> "AllowList":
        """The list in `path`; a missing file is an empty list (nobody is allowed)."""
        p = pathlib.Path(path).expanduser()
        try:
            text = p.read_text()
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError) as e:
            raise KeyFileError(f"cannot read {p}: {e}") from None
        return cls.parse(text, str(p))

    def dumps(self) -> str:
        lines = ["# zqnode allow-list: PUBLIC-KEY ROLE [NAME]"]
        for e in sorted(self.entries.values(), key=lambda e: (e.role, e.name, e.key)):
            lines.append(" ".join(x for x in (e.key, e.role, e.name) if x))
        return "\n".join(lines) + "\n"

    def save(self, path) -> None:
        p = pathlib.Path(path).expanduser()
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_atomic(p, self.dumps().encode(), 0o600)


# -- what a node or the hub uses -----------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    public: bytes                # Z85
    secret: bytes                # Z85
    server: bytes | None = None  # the hub's public key (peers); None for the hub itself


def key_dir(cfg: BusConfig, name: str) -> pathlib.Path:
    """Where a node's keys are: bus.key_dir, else $ZQNODE_KEY_DIR, else ~/.zqnode/NAME."""
    d = cfg.key_dir or os.environ.get("ZQNODE_KEY_DIR", "") or f"~/.zqnode/{name}"
    return pathlib.Path(d).expanduser()


def peer_credentials(cfg: BusConfig, name: str) -> Credentials | None:
    """A peer's keys and the hub's public key (bus.hub_key, else $ZQNODE_HUB_KEY, else
    hub.pub beside the keys); None when the bus runs without security."""
    if cfg.security_mode() == "none":
        return None
    d = key_dir(cfg, name)
    public, secret = read_key_pair(d)
    hub = cfg.hub_key or os.environ.get("ZQNODE_HUB_KEY", "")
    if hub:
        try:
            server = check_public_key(hub)
        except KeyFileError as e:
            raise KeyFileError(f"bus.hub_key: {e}") from None
    else:
        path = d / HUB_FILE
        if not path.exists():
            raise KeyFileError(f"the hub's public key is unknown: copy the hub's node.pub to {path} "
                               f"or set bus.hub_key (curve security; bus.security = \"none\" turns it off)")
        server = read_public_key(path)
    return Credentials(public, secret, server.encode())


def hub_credentials(cfg: BusConfig, name: str = "hub") -> Credentials | None:
    if cfg.security_mode() == "none":
        return None
    public, secret = read_key_pair(key_dir(cfg, name))
    return Credentials(public, secret)


def allow_list_path(cfg: BusConfig, name: str = "hub") -> pathlib.Path:
    return pathlib.Path(cfg.allow_list).expanduser() if cfg.allow_list else key_dir(cfg, name) / ALLOW_FILE


def provision(hub_dir, nodes: list[tuple[str, str, str]]) -> str:
    """Keys for a cluster on one machine (a devnet, tests): the hub's pair in `hub_dir`,
    and for each (key_dir, role, name) a pair, hub.pub, and an allow-list entry pinning
    the name. Existing pairs are kept. Returns the hub's public key."""
    hub_dir = pathlib.Path(hub_dir).expanduser()
    try:
        hub_pub = read_key_pair(hub_dir)[0].decode()
    except KeyFileError:
        hub_pub = init_key_pair(hub_dir, overwrite=True)
    allow = AllowList.load(hub_dir / ALLOW_FILE)
    for d, role, name in nodes:
        try:
            pub = read_key_pair(d)[0].decode()
        except KeyFileError:
            pub = init_key_pair(d, overwrite=True)
        _write_atomic(pathlib.Path(d).expanduser() / HUB_FILE, hub_pub.encode() + b"\n", 0o644)
        allow = allow.with_key(Allowed(pub, check_role(role), check_name(name) if name else ""))
    allow.save(hub_dir / ALLOW_FILE)
    return hub_pub


def _write_atomic(path: pathlib.Path, data: bytes, mode: int) -> None:
    """Write beside, then rename over: readers (the hub's reload) see old or new, whole.
    mkstemp creates the file 0600, so a secret is never readable by others."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
