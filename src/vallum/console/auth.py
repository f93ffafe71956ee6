"""Console users, sessions and CSRF tokens, kept in the behaviour store's database.

The tables live here (their own `MetaData`, created on first use with `create_all`) rather than in
the storage package's migrations: they belong to the console alone and nothing else reads them.

- Passwords: argon2id (`argon2-cffi`), rehashed on login when the parameters change.
- Sessions: a random 256-bit token in a cookie, HMAC-signed with a secret kept in the database
  (a forged or altered cookie is rejected before any lookup); only the token's SHA-256 is stored,
  so a database reader cannot take over a session. Idle and absolute expiry.
- CSRF: one random token per session (synchroniser token), required on every state-changing
  request as a form field `csrf_token` or an `X-CSRF-Token` header, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.engine import Engine

ROLES = ("viewer", "analyst", "admin")
ROLE_RANK = {r: i for i, r in enumerate(ROLES)}
SESSION_IDLE_S = 8 * 3600.0
SESSION_MAX_S = 7 * 86400.0
MIN_PASSWORD_LEN = 10
_USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")

metadata = sa.MetaData()

console_users = sa.Table(
    "console_users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_login_at", sa.Float, nullable=True),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("seen_at", sa.Float, nullable=False),
)

console_secrets = sa.Table(
    "console_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)


class AuthError(ValueError):
    """A user-management request that cannot be honoured (message says why)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """First-run admin credentials: print them once, they are not stored in clear anywhere."""

    username: str
    password: str


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    username: str
    role: str
    disabled: bool = False
    created_at: float = 0.0
    last_login_at: float | None = None

    def can(self, role: str) -> bool:
        """True if this user's role is `role` or stronger (viewer < analyst < admin)."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True, slots=True)
class Session:
    user: ConsoleUser
    csrf: str
    token_hash: str


def _engine_of(store_or_url: Any) -> Engine:
    """An SQLAlchemy engine from a `Store`, an engine, a store URL or a data directory."""
    if isinstance(store_or_url, Engine):
        return store_or_url
    eng = getattr(store_or_url, "engine", None)
    if isinstance(eng, Engine):
        return eng
    if isinstance(store_or_url, Path) or (isinstance(store_or_url, str) and "://" not in store_or_url):
        from vallum.storage.store import open_store

        return open_store(f"sqlite:///{(Path(store_or_url) / 'vallum.db').as_posix()}").engine
    from vallum.storage.store import open_store

    return open_store(str(store_or_url)).engine


class UserStore:
    """Users, sessions and the cookie-signing secret. Thread-safe; every call is short."""

    def __init__(self, store_or_url: Any) -> None:
        self.engine = _engine_of(store_or_url)
        metadata.create_all(self.engine)
        self.hasher = PasswordHasher()
        self._lock = threading.Lock()
        self._secret = self._load_secret()
        #: token hash → (session, cache expiry): saves a database read per page view
        self._cache: dict[str, tuple[Session, float]] = {}

    # ------------------------------------------------------------------ secret
    def _load_secret(self) -> bytes:
        with self.engine.begin() as c:
            row = c.execute(sa.select(console_secrets.c.value).where(console_secrets.c.name == "cookie")).first()
            if row is not None:
                return bytes.fromhex(row[0])
            value = secrets.token_hex(32)
            try:
                c.execute(console_secrets.insert().values(name="cookie", value=value))
            except sa.exc.IntegrityError:  # another process created it first
                pass
        with self.engine.connect() as c:
            return bytes.fromhex(c.execute(sa.select(console_secrets.c.value)
                                           .where(console_secrets.c.name == "cookie")).scalar_one())

    def sign(self, token: str) -> str:
        return token + "." + hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()

    def unsign(self, cookie: str) -> str | None:
        token, _, mac = cookie.rpartition(".")
        if not token or not mac:
            return None
        want = hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()
        return token if hmac.compare_digest(want, mac) else None

    # ------------------------------------------------------------------ users
    def count_users(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(console_users)).scalar_one())

    def list_users(self) -> list[ConsoleUser]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(console_users).order_by(console_users.c.username)).mappings().all()
        return [_user(r) for r in rows]

    def get_user(self, username: str) -> ConsoleUser | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(console_users).where(console_users.c.username == username)).mappings().first()
        return _user(r) if r else None

    def create_user(self, username: str, password: str, role: str, *, now: float | None = None) -> ConsoleUser:
        if not _USERNAME.match(username):
            raise AuthError("username: 1-64 letters, digits, '.', '_', '@' or '-'")
        if role not in ROLES:
            raise AuthError(f"role must be one of {', '.join(ROLES)}")
        check_password_strength(password)
        now = time.time() if now is None else now
        try:
            with self.engine.begin() as c:
                c.execute(console_users.insert().values(username=username, password_hash=self.hasher.hash(password),
                                                        role=role, disabled=False, created_at=now))
        except sa.exc.IntegrityError:
            raise AuthError(f"user {username!r} already exists") from None
        return ConsoleUser(username, role, False, now)

    def set_role(self, username: str, role: str) -> None:
        if role not in ROLES:
            raise AuthError(f"role must be one of {', '.join(ROLES)}")
        self._guard_last_admin(username, new_role=role)
        self._update(username, role=role)

    def set_disabled(self, username: str, disabled: bool) -> None:
        if disabled:
            self._guard_last_admin(username, disabling=True)
        self._update(username, disabled=disabled)
        if disabled:
            self.end_sessions(username)

    def set_password(self, username: str, password: str) -> None:
        check_password_strength(password)
        self._update(username, password_hash=self.hasher.hash(password))
        self.end_sessions(username)

    def _update(self, username: str, **values: Any) -> None:
        with self.engine.begin() as c:
            n = c.execute(console_users.update().where(console_users.c.username == username).values(**values)).rowcount
        if not n:
            raise AuthError(f"no user {username!r}")
        self._cache.clear()

    def _guard_last_admin(self, username: str, *, new_role: str | None = None, disabling: bool = False) -> None:
        """Nobody may remove the last active admin (the console would become unmanageable)."""
        user = self.get_user(username)
        if user is None or user.role != "admin" or user.disabled:
            return
        if new_role == "admin" and not disabling:
            return
        admins = [u for u in self.list_users() if u.role == "admin" and not u.disabled]
        if len(admins) <= 1:
            raise AuthError("this is the last active admin; make another admin first")

    def authenticate(self, username: str, password: str, *, now: float | None = None) -> ConsoleUser | None:
        """The user if the password matches and the account is enabled, else None (same time either way)."""
        with self.engine.connect() as c:
            r = c.execute(sa.select(console_users).where(console_users.c.username == username)).mappings().first()
        stored = r["password_hash"] if r else _DUMMY_HASH
        try:
            self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if r is None or r["disabled"]:
            return None
        now = time.time() if now is None else now
        values: dict[str, Any] = {"last_login_at": now}
        if self.hasher.check_needs_rehash(stored):
            values["password_hash"] = self.hasher.hash(password)
        with self.engine.begin() as c:
            c.execute(console_users.update().where(console_users.c.username == username).values(**values))
        return _user(r)

    # ------------------------------------------------------------------ sessions
    def create_session(self, username: str, *, now: float | None = None) -> tuple[str, str]:
        """(signed cookie value, CSRF token) for a fresh session."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        with self.engine.begin() as c:
            c.execute(console_sessions.insert().values(token_hash=_h(token), username=username, csrf=csrf,
                                                       created_at=now, seen_at=now))
            # housekeeping: drop expired sessions
            c.execute(console_sessions.delete().where(sa.or_(console_sessions.c.seen_at < now - SESSION_IDLE_S,
                                                             console_sessions.c.created_at < now - SESSION_MAX_S)))
        return self.sign(token), csrf

    def session(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The live session a cookie names, or None (unsigned, unknown, expired, user disabled)."""
        if not cookie:
            return None
        token = self.unsign(cookie)
        if token is None:
            return None
        th = _h(token)
        now = time.time() if now is None else now
        hit = self._cache.get(th)
        if hit is not None and hit[1] > now:
            return hit[0]
        with self.engine.connect() as c:
            r = c.execute(sa.select(console_sessions, console_users.c.role, console_users.c.disabled,
                                    console_users.c.created_at.label("user_created"),
                                    console_users.c.last_login_at)
                          .join(console_users, console_users.c.username == console_sessions.c.username)
                          .where(console_sessions.c.token_hash == th)).mappings().first()
        if r is None or r["disabled"]:
            return None
        if r["seen_at"] < now - SESSION_IDLE_S or r["created_at"] < now - SESSION_MAX_S:
            self.end_session(cookie)
            return None
        if now - r["seen_at"] > 60:
            with self.engine.begin() as c:
                c.execute(console_sessions.update().where(console_sessions.c.token_hash == th).values(seen_at=now))
        sess = Session(ConsoleUser(r["username"], r["role"], False, r["user_created"], r["last_login_at"]),
                       r["csrf"], th)
        with self._lock:
            if len(self._cache) > 5000:
                self._cache.clear()
            self._cache[th] = (sess, now + 5.0)
        return sess

    def end_session(self, cookie: str) -> None:
        token = self.unsign(cookie)
        if token is None:
            return
        th = _h(token)
        self._cache.pop(th, None)
        with self.engine.begin() as c:
            c.execute(console_sessions.delete().where(console_sessions.c.token_hash == th))

    def end_sessions(self, username: str) -> None:
        with self.engine.begin() as c:
            c.execute(console_sessions.delete().where(console_sessions.c.username == username))
        self._cache.clear()


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LEN:
        raise AuthError(f"password: at least {MIN_PASSWORD_LEN} characters")
    if len(password) > 1024:
        raise AuthError("password: at most 1024 characters")


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


def _h(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(r: Any) -> ConsoleUser:
    return ConsoleUser(r["username"], r["role"], bool(r["disabled"]), r["created_at"], r["last_login_at"])


_DUMMY_HASH = PasswordHasher().hash(secrets.token_hex(16))


class LoginThrottle:
    """At most `limit` failed logins per username and per client address in `window_s` (wall clock)."""

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._fails: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, keys: list[str], now: float) -> bool:
        with self._lock:
            return any(len(self._recent(k, now)) >= self.limit for k in keys)

    def fail(self, keys: list[str], now: float) -> None:
        with self._lock:
            if len(self._fails) > 10_000:
                self._fails.clear()
            for k in keys:
                self._recent(k, now).append(now)

    def clear(self, keys: list[str]) -> None:
        with self._lock:
            for k in keys:
                self._fails.pop(k, None)

    def _recent(self, key: str, now: float) -> list[float]:
        lst = [t for t in self._fails.get(key, []) if t > now - self.window_s]
        self._fails[key] = lst
        return lst


def ensure_admin(store_or_url: Any, *, username: str = "admin", password: str | None = None) -> Credentials | None:
    """Create the first admin when the console has no user yet; return its credentials, else None.

    `store_or_url`: the behaviour `Store`, an SQLAlchemy engine, a store URL, or a data directory
    (its `vallum.db`). The generated password is returned once and only its argon2 hash is kept:
    print it (``vallum run`` does) — it cannot be shown again (an admin can reset passwords).
    """
    users = UserStore(store_or_url)
    if users.count_users() > 0:
        return None
    pw = password or secrets.token_urlsafe(15)
    try:
        users.create_user(username, pw, "admin")
    except AuthError:
        # another process created the first user meanwhile
        if users.count_users() > 0:
            return None
        raise
    return Credentials(username, pw)
