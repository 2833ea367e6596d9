"""``kitectl kontrol``: run a Kontrol and administer its storage (keys, users, registration tokens).

Settings come from defaults, then ``KONTROL_*`` environment variables, then
the flags given here. Kontrol's own kite.key goes to --kite-key, else to the
usual kite.key location, so kitectl and kites on the same machine use it.
"""

from __future__ import annotations

import enum
import getpass
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import KitectlCommand
from ..errors import CLIError, usage_error
from ..output import note
from ..runtime import parse_duration, run, setup_logging

if TYPE_CHECKING:
    from kontrol.server import Kontrol
    from kontrol.settings import KontrolSettings
    from kontrol.storage import Storage

logger = logging.getLogger(__name__)

app = typer.Typer(help="Run a Kontrol and manage its key pairs, users and registration tokens.",
                  no_args_is_help=True, rich_markup_mode=None)
keys_app = typer.Typer(help="Manage Kontrol's signing key pairs.", no_args_is_help=True, rich_markup_mode=None)
user_app = typer.Typer(help="Manage the users that may register machines with a password.", no_args_is_help=True,
                       rich_markup_mode=None)
token_app = typer.Typer(help="Manage one-time registration tokens.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(keys_app, name="keys")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")


class StorageKind(str, enum.Enum):
    sqlite = "sqlite"
    etcd = "etcd"
    postgres = "postgres"


class LogLevel(str, enum.Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


StorageOption = Annotated[Optional[StorageKind], typer.Option(
    "--storage", help="Storage backend; sqlite is embedded and needs no server. Default: $KONTROL_STORAGE or sqlite.",
    show_default=False)]
DbOption = Annotated[Optional[Path], typer.Option(
    "--db", metavar="PATH", dir_okay=False,
    help="SQLite database file. Default: $KONTROL_DB_PATH, else kontrol/kontrol.db in the user data directory.")]
EtcdOption = Annotated[Optional[str], typer.Option(
    "--etcd-endpoints", metavar="URL,...",
    help="etcd client URLs, comma-separated (the first is used). Default: $KONTROL_ETCD_ENDPOINTS or "
         "http://127.0.0.1:2379.")]
PostgresOption = Annotated[Optional[str], typer.Option(
    "--postgres-dsn", metavar="DSN", help="PostgreSQL connection string. Default: $KONTROL_POSTGRES_DSN.")]
HostOption = Annotated[Optional[str], typer.Option(
    "--host", metavar="ADDRESS", help="Address to listen on. Default: $KONTROL_HOST or 0.0.0.0.")]
PortOption = Annotated[Optional[int], typer.Option(
    "--port", "-p", min=0, max=65535, metavar="PORT",
    help="TCP port; 0 picks a free one. Default: $KONTROL_PORT or 4000.")]
PublicUrlOption = Annotated[Optional[str], typer.Option(
    "--public-url", metavar="URL",
    help="URL kites use to reach Kontrol, written into the kite keys it issues. "
         "Default: $KONTROL_PUBLIC_URL, else http://127.0.0.1:PORT/kite.")]
TlsCertOption = Annotated[Optional[Path], typer.Option(
    "--tls-cert", metavar="PATH", dir_okay=False, help="TLS certificate (PEM); needs --tls-key.")]
TlsKeyOption = Annotated[Optional[Path], typer.Option(
    "--tls-key", metavar="PATH", dir_okay=False, help="TLS private key (PEM); needs --tls-cert.")]
UsernameOption = Annotated[Optional[str], typer.Option(
    "--username", metavar="NAME",
    help="Kontrol's own user, the issuer of every key and token. Default: $KONTROL_USERNAME or kontrol.")]
KiteKeyOption = Annotated[Optional[Path], typer.Option(
    "--kite-key", metavar="PATH", dir_okay=False,
    help="Where Kontrol's own kite.key goes. Default: $KONTROL_KITE_KEY_PATH, else $KITE_HOME/kite.key or "
         "~/.config/kite/kite.key.")]
ForceOption = Annotated[bool, typer.Option(
    "--force", "-f", help="Replace a kite.key that another Kontrol signed.")]


def build_settings(**values: Any) -> "KontrolSettings":
    """Return settings from defaults, then KONTROL_* variables, then the flags that were given."""
    from kitelib.config import ConfigError
    from kontrol.settings import KontrolSettings

    try:
        settings = KontrolSettings().apply_environment()
    except ConfigError as exc:
        raise CLIError("invalid KONTROL_* environment variable", str(exc), "fix or unset it") from exc
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        elif name in ("etcd_endpoints", "machine_auth"):
            value = [part.strip() for part in value.split(",") if part.strip()]
        setattr(settings, name, value)
    try:
        settings.validate()
    except ConfigError as exc:
        raise usage_error("invalid Kontrol settings", str(exc)) from exc
    return settings


async def open_storage(settings: "KontrolSettings") -> "Storage":
    """Open and start the configured storage; an unreachable backend becomes a CLIError naming it."""
    import asyncio

    from kontrol.storage import StorageError
    from kontrol.storage import open_storage as open_backend

    storage = open_backend(settings.storage, **settings.storage_settings())
    try:
        await asyncio.wait_for(storage.start(), settings.storage_timeout + 1)
    except StorageError as exc:
        raise CLIError(f"cannot open {settings.storage} storage", str(exc)) from exc
    except (OSError, asyncio.TimeoutError) as exc:
        raise CLIError(f"cannot open {settings.storage} storage", f"{storage.address}: {exc or 'timed out'}",
                       "check that the backend runs and the address is right") from exc
    return storage


def own_kite_key_path(settings: "KontrolSettings") -> Path:
    from kitelib.auth.keyfile import kite_key_path

    return Path(settings.kite_key_path).expanduser() if settings.kite_key_path else kite_key_path()


def kite_key_owner(kontrol: "Kontrol", path: Path) -> tuple[str, dict[str, Any]]:
    """Return ("none" | "this" | "other", claims) for the kite.key at ``path``.

    "this" means the key verifies against one of this Kontrol's key pairs,
    retired ones included.
    """
    from kitelib.auth.keyfile import KiteKeyError, check_kite_key, load_kite_key

    if not path.exists():
        return "none", {}
    try:
        key = load_kite_key(path)
        check = check_kite_key(key.token)
    except KiteKeyError:
        return "other", {}
    kontrol_key = key.claims.get("kontrolKey")
    mine = isinstance(kontrol_key, str) and kontrol.keys.by_public(kontrol_key) is not None and check.signature_ok
    return ("this" if mine else "other"), dict(key.claims)


def write_own_kite_key(kontrol: "Kontrol", path: Path) -> str:
    from kitelib.auth.keyfile import write_kite_key

    try:
        written = write_kite_key(kontrol.own_kite_key(), path)
    except OSError as exc:
        raise CLIError("cannot write Kontrol's kite.key", f"{path}: {exc.strerror or exc}",
                       "check the directory permissions, or pass --kite-key") from exc
    return f"wrote kite.key for user {kontrol.settings.username!r} to {written}"


# --- serve -----------------------------------------------------------------


@app.command("serve", cls=KitectlCommand)
def serve(
    storage: StorageOption = None,
    db: DbOption = None,
    etcd_endpoints: EtcdOption = None,
    postgres_dsn: PostgresOption = None,
    host: HostOption = None,
    port: PortOption = None,
    public_url: PublicUrlOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    username: UsernameOption = None,
    kite_key: KiteKeyOption = None,
    machine_auth: Annotated[Optional[str], typer.Option(
        "--machine-auth", metavar="TYPE,...",
        help="registerMachine methods to accept: password, token, open (open gives keys to anyone). "
             "Default: $KONTROL_MACHINE_AUTH or password,token.")] = None,
    init: Annotated[bool, typer.Option(
        "--init/--no-init", help="Create the first key pair when storage has none (--no-init exits 1 instead).")
    ] = True,
    force: ForceOption = False,
    log_level: Annotated[LogLevel, typer.Option("--log-level", help="Log level on stderr.")] = LogLevel.info,
) -> None:
    """Run a Kontrol until Ctrl-C or SIGTERM; the embedded SQLite default needs no flags.

    On first start with empty storage it creates a key pair and writes its own
    kite.key (see 'kontrol init'), and prints what it did. It prints 'kontrol serving on
    URL' on stdout once it accepts connections.
    """
    settings = build_settings(storage=storage, db_path=db, etcd_endpoints=etcd_endpoints, postgres_dsn=postgres_dsn,
                              host=host, port=port, public_url=public_url, tls_cert=tls_cert, tls_key=tls_key,
                              username=username, kite_key_path=kite_key, machine_auth=machine_auth)
    setup_logging(getattr(logging, log_level.value.upper()))
    run(lambda: _serve(settings, init, force))


async def _serve(settings: "KontrolSettings", init: bool, force: bool) -> None:
    import asyncio

    from kontrol.keys import NoKeysError
    from kontrol.server import serve as serve_kontrol
    from kontrol.storage import StorageError

    def ready(kontrol: "Kontrol") -> None:
        where = f"{kontrol.storage.kind} storage at {kontrol.storage.address}"
        if kontrol.initialized:
            print(f"initialized Kontrol: created key pair {kontrol.keys.require_current().id} in {where}", flush=True)
            _install_kite_key_after_init(kontrol, force)
        print(f"kontrol serving on {kontrol.url} ({where})", flush=True)

    try:
        await serve_kontrol(settings, auto_init=init, ready=ready)
    except NoKeysError as exc:
        raise CLIError("Kontrol has no key pair", str(exc).split(":")[0],
                       "run 'kitectl kontrol init' first, or drop --no-init") from exc
    except StorageError as exc:
        # Storage errors already name the address and what to check.
        raise CLIError(f"cannot open {settings.storage} storage", str(exc)) from exc
    except asyncio.TimeoutError as exc:
        raise CLIError(f"cannot open {settings.storage} storage", f"timed out after {settings.storage_timeout:g}s",
                       "check that the backend runs and the address is right") from exc
    except OSError as exc:
        raise CLIError(f"cannot listen on {settings.host}:{settings.port}", exc.strerror or str(exc),
                       "pick another --port or stop the process that uses it") from exc


def _install_kite_key_after_init(kontrol: "Kontrol", force: bool) -> None:
    """Write Kontrol's kite.key after the first key pair was created.

    Failures become warnings on stderr instead of exceptions, because Kontrol is already serving.
    """
    from kitelib.auth.keyfile import KiteKeyError

    path = own_kite_key_path(kontrol.settings)
    owner, _claims = kite_key_owner(kontrol, path)
    if owner == "this":
        print(f"kept kite.key at {path}: this Kontrol signed it", flush=True)
        return
    if owner == "other" and not force:
        print(f"kitectl: warning: kept kite.key {path}: another Kontrol signed it, so kitectl on this machine "
              f"cannot query this one: restart with --force to replace it, or use --kite-key", file=sys.stderr,
              flush=True)
        return
    try:
        print(write_own_kite_key(kontrol, path), flush=True)
    except (CLIError, KiteKeyError) as exc:
        print(f"kitectl: warning: {exc}", file=sys.stderr, flush=True)


# --- init ------------------------------------------------------------------


@app.command("init", cls=KitectlCommand)
def init(
    storage: StorageOption = None,
    db: DbOption = None,
    etcd_endpoints: EtcdOption = None,
    postgres_dsn: PostgresOption = None,
    host: HostOption = None,
    port: PortOption = None,
    public_url: PublicUrlOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    username: UsernameOption = None,
    kite_key: KiteKeyOption = None,
    force: ForceOption = False,
) -> None:
    """Create Kontrol's first key pair and write its own kite.key, without serving.

    Safe to run again: existing key pairs are kept, and so is a kite.key this
    Kontrol signed. A kite.key signed by another Kontrol is replaced only with
    --force. Give the same --port or --public-url as 'kontrol serve', because
    the URL goes into the kite.key.
    """
    settings = build_settings(storage=storage, db_path=db, etcd_endpoints=etcd_endpoints, postgres_dsn=postgres_dsn,
                              host=host, port=port, public_url=public_url, tls_cert=tls_cert, tls_key=tls_key,
                              username=username, kite_key_path=kite_key)
    setup_logging()
    run(lambda: _init(settings, force))


async def _init(settings: "KontrolSettings", force: bool) -> None:
    from kontrol.keys import NoKeysError
    from kontrol.server import Kontrol

    storage = await open_storage(settings)
    kontrol = Kontrol(settings, storage)
    where = f"{storage.kind} storage at {storage.address}"
    try:
        try:
            await kontrol.keys.load()
            has_keys = True
        except NoKeysError:
            has_keys = False
        path = own_kite_key_path(settings)
        owner, _claims = kite_key_owner(kontrol, path)
        if owner == "other" and not force:
            raise CLIError("kite.key was signed by another Kontrol", str(path),
                           "pass --force to replace it, or choose another path with --kite-key or KITE_HOME")
        if has_keys:
            print(f"Kontrol already has key pair {kontrol.keys.require_current().id} in {where}; kept it")
        else:
            pair = await kontrol.keys.create()
            print(f"initialized Kontrol: created key pair {pair.id} in {where}")
        if owner == "this":
            print(f"kept kite.key at {path}: this Kontrol signed it")
        else:
            print(write_own_kite_key(kontrol, path))
    finally:
        await storage.close()


# --- keys rotate -----------------------------------------------------------


@keys_app.command("rotate", cls=KitectlCommand)
def rotate(
    storage: StorageOption = None,
    db: DbOption = None,
    etcd_endpoints: EtcdOption = None,
    postgres_dsn: PostgresOption = None,
    kite_key: KiteKeyOption = None,
) -> None:
    """Create a new signing key pair and retire the current one.

    Tokens and kite keys signed by the retired pair stay valid; kites get
    re-signed keys when they next register. Kontrol's own kite.key is
    re-signed with the new pair. A running Kontrol loads key pairs at start:
    restart it to sign with the new pair.
    """
    settings = build_settings(storage=storage, db_path=db, etcd_endpoints=etcd_endpoints, postgres_dsn=postgres_dsn,
                              kite_key_path=kite_key)
    setup_logging()
    run(lambda: _rotate(settings))


async def _rotate(settings: "KontrolSettings") -> None:
    from kitelib.auth.keyfile import write_kite_key
    from kitelib.auth.tokens import sign_claims
    from kontrol.keys import NoKeysError
    from kontrol.server import Kontrol

    storage = await open_storage(settings)
    kontrol = Kontrol(settings, storage)
    try:
        try:
            await kontrol.keys.load()
        except NoKeysError as exc:
            raise CLIError("no key pair to rotate", f"{storage.kind} storage at {storage.address}",
                           "run 'kitectl kontrol init' first") from exc
        old_id = kontrol.keys.require_current().id
        new_id = await kontrol.rotate_keys()
        print(f"created key pair {new_id}; retired key pair {old_id}")
        path = own_kite_key_path(settings)
        owner, claims = kite_key_owner(kontrol, path)
        if owner == "this":
            current = kontrol.keys.require_current()
            # Keep every claim (user, issuer, URL, jti); only the signing key changes, as Kontrol re-signs on register.
            written = write_kite_key(sign_claims({**claims, "kontrolKey": current.public_pem}, current.private_key),
                                     path)
            print(f"re-signed kite.key at {written} with the new key pair")
        print("running Kontrols on this storage switch to the new key pair within 10 seconds")
    finally:
        await storage.close()


# --- user add --------------------------------------------------------------


@user_app.command("add", cls=KitectlCommand)
def user_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="User name; no '/'.")],
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from the first line of stdin instead of prompting twice.")
    ] = False,
    storage: StorageOption = None,
    db: DbOption = None,
    etcd_endpoints: EtcdOption = None,
    postgres_dsn: PostgresOption = None,
) -> None:
    """Add a user, or set a new password for one, for 'kitectl register --password'.

    Only an argon2 hash of the password is stored.
    """
    if not name or "/" in name or name == "anonymous":
        raise usage_error("invalid user name", repr(name), "use a non-empty name without '/' other than anonymous")
    password = _read_new_password(name, password_stdin)
    settings = build_settings(storage=storage, db_path=db, etcd_endpoints=etcd_endpoints, postgres_dsn=postgres_dsn)
    setup_logging()
    run(lambda: _user_add(settings, name, password))


def _read_new_password(name: str, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise usage_error("no terminal to ask for the password", "", "pipe it in with --password-stdin")
        password = getpass.getpass(f"Password for {name}: ")
        if getpass.getpass("Repeat the password: ") != password:
            raise CLIError("passwords do not match", "", "run the command again")
    if not password:
        raise usage_error("empty password", "", "give a non-empty password")
    return password


async def _user_add(settings: "KontrolSettings", name: str, password: str) -> None:
    import asyncio

    from kontrol.machine import hash_password

    password_hash = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
    storage = await open_storage(settings)
    try:
        existed = await storage.get_user(name) is not None
        await storage.set_user(name, password_hash)
    finally:
        await storage.close()
    action = "updated the password of" if existed else "added"
    print(f"{action} user {name!r} in {storage.kind} storage at {storage.address}")


# --- token create ----------------------------------------------------------


@token_app.command("create", cls=KitectlCommand)
def token_create(
    username: Annotated[Optional[str], typer.Option(
        "--username", metavar="NAME", help="Only this user may register with the token. Default: any user.")] = None,
    ttl: Annotated[str, typer.Option(
        "--ttl", metavar="DURATION", help="How long the token stays usable: seconds or a Go duration.")] = "24h",
    storage: StorageOption = None,
    db: DbOption = None,
    etcd_endpoints: EtcdOption = None,
    postgres_dsn: PostgresOption = None,
) -> None:
    """Create a one-time registration token and print it on stdout.

    Hand it to the machine's owner, who runs 'kitectl register --token TOKEN'.
    Only its SHA-256 hash is stored, and it works once.
    """
    seconds = parse_duration(ttl, "--ttl")
    settings = build_settings(storage=storage, db_path=db, etcd_endpoints=etcd_endpoints, postgres_dsn=postgres_dsn)
    setup_logging()
    token = run(lambda: _token_create(settings, username, seconds))
    print(token)
    if sys.stderr.isatty():
        note(f"one-time token for {repr(username) if username else 'any user'}, valid for {ttl}: "
             "run 'kitectl register --token TOKEN' on the machine")


async def _token_create(settings: "KontrolSettings", username: str | None, ttl: float) -> str:
    from kontrol.machine import create_registration_token

    storage = await open_storage(settings)
    try:
        return await create_registration_token(storage, username, ttl)
    finally:
        await storage.close()
