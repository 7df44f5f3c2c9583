"""Configuration: a TOML file plus ``MARGIN_MONITOR_*`` environment overrides.

Precedence, highest first: environment (``MARGIN_MONITOR_IB__PORT=4002``), the TOML file named by
``--config`` or ``MARGIN_MONITOR_CONFIG``, then the defaults below. Anything invalid becomes one
:class:`ConfigError` whose message names the key and the problem and never echoes a value (an
Apprise URL holds tokens).

Whatever could only fail later is refused here: a file that is not a regular UTF-8 TOML file
(a FIFO would hang the read), nesting too deep to parse, unknown time zones, infinite or
absurdly long durations, paths with a NUL byte, a log file that is a directory, an Apprise
configuration file (``[notify] config``) that is not there. (Apprise URLs are checked with
Apprise's own parser by :func:`monitor.notifier.target_problems`.)

In the environment a list key also takes ``APPRISE_URLS``-style text, items separated by commas
or spaces (``MARGIN_MONITOR_NOTIFY__URLS='json://a json://b'``), besides JSON; a value that
cannot be read names its variable and the form expected.

:func:`describe_settings` is ``config show``: every effective value with where it came from
(default, file, environment), secrets masked. This module imports neither Apprise nor
anything that connects, so the offline commands start fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from rules import RulesConfig
from rules.clock import parse_hhmm, parse_window, zone
from rules.lifecycle import LifecyclePolicy

ENV_PREFIX = "MARGIN_MONITOR_"
CONFIG_ENV = "MARGIN_MONITOR_CONFIG"
#: What a notification target can receive: the three severities, and the daily summary.
NotifySeverity = Literal["info", "warning", "critical", "summary"]
NOTIFY_SEVERITIES: tuple[NotifySeverity, ...] = ("info", "warning", "critical", "summary")


#: The longest any interval may be: a day (beyond it a timer means a mistake, and the
#: underlying waits overflow long before ``inf``).
DAY = 86_400.0
Seconds = Annotated[float, Field(gt=0, le=DAY)]


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and what to fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, allow_inf_nan=False)


def _time_zone(value: str | None) -> str | None:
    """An IANA time zone name that exists (``None`` for the machine's)."""
    if value is not None:
        zone(value)
    return value


def _plain_path(value: Path | None) -> Path | None:
    """A path without a NUL byte (the OS would refuse it only when first used)."""
    if value is not None and "\x00" in str(value):
        raise ValueError("the path contains a NUL byte")
    return value


#: The largest client id the TWS API takes.
MAX_CLIENT_ID = 2**31 - 1


class IBSettings(_Section):
    """Where TWS or IB Gateway listens and which accounts to watch.

    ``check_client_id`` is the id ``check`` connects with, so that it never collides with the
    daemon's ``client_id`` (by default the daemon's id plus one).
    """

    host: str = "127.0.0.1"
    port: int = Field(7497, ge=1, le=65535)
    client_id: int = Field(17, ge=0, le=MAX_CLIENT_ID)
    check_client_id: int | None = Field(None, ge=0, le=MAX_CLIENT_ID)
    accounts: list[str] = Field(default_factory=list)
    timeout: float = Field(10.0, gt=0, le=300)
    reconnect_min_seconds: float = Field(1.0, gt=0, le=3600)
    reconnect_max_seconds: float = Field(60.0, gt=0, le=3600)
    probe_after_seconds: float = Field(60.0, gt=0, le=3600)
    restart_window: str | None = None
    fundamentals: bool = True
    price_streams: Literal["per_contract", "per_holding"] = "per_contract"

    @field_validator("restart_window")
    @classmethod
    def _check_window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value

    @property
    def check_id(self) -> int:
        """The client id of ``check``: ``check_client_id``, else the daemon's id plus one."""
        if self.check_client_id is not None:
            return self.check_client_id
        return self.client_id + 1 if self.client_id < MAX_CLIENT_ID else self.client_id - 1


class NotifyTarget(_Section):
    """One Apprise URL and the severities it receives."""

    url: SecretStr
    severities: list[NotifySeverity] = Field(default_factory=lambda: list(NOTIFY_SEVERITIES))
    name: str | None = None


class NotifySettings(_Section):
    """Where alerts go. ``urls`` receive everything; ``targets`` route by severity;
    ``config`` names an Apprise configuration file (YAML or text) routed by its tags."""

    urls: list[SecretStr] = Field(default_factory=list)
    targets: list[NotifyTarget] = Field(default_factory=list)
    config: Path | None = None
    reminder_critical_minutes: float | None = Field(60.0, ge=0, le=DAY * 7 / 60)
    reminder_warning_minutes: float | None = Field(240.0, ge=0, le=DAY * 7 / 60)
    quiet_hours: str | None = None
    quiet_hours_timezone: str | None = None
    max_age_hours: float = Field(24.0, gt=0, le=24 * 30)
    send_timeout_seconds: float = Field(30.0, gt=0, le=600)
    heartbeat_url: SecretStr | None = None
    heartbeat_seconds: Seconds = 60.0

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value

    @field_validator("heartbeat_url")
    @classmethod
    def _check_heartbeat(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = heartbeat_url_problem(value.get_secret_value())
            if problem:
                raise ValueError(problem)
        return value

    _check_quiet_zone = field_validator("quiet_hours_timezone")(_time_zone)
    _check_config = field_validator("config")(_plain_path)

    def all_targets(self) -> list[NotifyTarget]:
        """``urls`` (every severity) followed by the routed ``targets`` (not those of the
        Apprise configuration file: reading it takes Apprise, see
        :func:`monitor.app.build_targets`)."""
        return [NotifyTarget(url=url) for url in self.urls] + list(self.targets)

    def reminder_policy(self) -> LifecyclePolicy:
        """How often a still-firing alert is repeated (0 or unset: never)."""

        def minutes(value: float | None) -> timedelta | None:
            return timedelta(minutes=value) if value else None

        return LifecyclePolicy(
            reminder_critical=minutes(self.reminder_critical_minutes),
            reminder_warning=minutes(self.reminder_warning_minutes),
        )


class MonitorSettings(_Section):
    """The daemon itself: state, logs, evaluation cadence."""

    state_dir: Path = Path("~/.local/state/margin-monitor")
    log_file: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"
    timezone: str | None = None
    evaluate_debounce_seconds: float = Field(0.05, ge=0, le=10)
    evaluate_every_seconds: float = Field(30.0, gt=0, le=3600)
    evaluate_min_move: float = Field(0.0005, ge=0, le=0.01)
    estimate: bool = True
    maintenance_rates: dict[str, float] = Field(default_factory=dict)
    history_retention_days: int = Field(400, ge=1, le=36_500)

    _check_zone = field_validator("timezone")(_time_zone)
    _check_paths = field_validator("state_dir", "log_file")(_plain_path)

    @field_validator("log_file")
    @classmethod
    def _check_log_file(cls, value: Path | None) -> Path | None:
        if value is not None and value.expanduser().is_dir():
            raise ValueError("is a directory; name a file in it, e.g. monitor.jsonl")
        return value

    @property
    def state_path(self) -> Path:
        """The state directory with ``~`` expanded."""
        return self.state_dir.expanduser()

    @property
    def database_path(self) -> Path:
        """The SQLite file of alert states, outbox, history and peaks in the state directory."""
        return self.state_path / "monitor.sqlite3"

    @property
    def summaries_path(self) -> Path:
        """Where the daily summaries (Markdown and charts) are kept."""
        return self.state_path / "summaries"


class SummarySettings(_Section):
    """The daily summary job."""

    enabled: bool = True
    time: str = "17:00"
    timezone: str = "America/New_York"
    days: str = "mon-fri"

    @field_validator("time")
    @classmethod
    def _check_time(cls, value: str) -> str:
        parse_hhmm(value)
        return value

    _check_zone = field_validator("timezone")(_time_zone)


class MetricsSettings(_Section):
    """The optional Prometheus endpoint (off unless a port is set)."""

    port: int | None = Field(None, ge=1, le=65535)
    host: str = "127.0.0.1"


#: Shortest ``[web] token`` accepted: a token guards the page from the network.
MIN_WEB_TOKEN = 16


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and any loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebSettings(_Section):
    """The read-only status page (off unless a port is set).

    It binds to loopback by default; any other address requires ``token`` (the page shows
    account figures, so nothing on the network may read it without the secret).
    """

    port: int | None = Field(None, ge=1, le=65535)
    host: str = "127.0.0.1"
    token: SecretStr | None = Field(None, validate_default=True)

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        host = info.data.get("host", "127.0.0.1")
        if value is None and not is_loopback(host):
            raise ValueError(
                f"required when host ({host}) is not loopback: anyone who can reach the port "
                'would see the accounts (or keep host = "127.0.0.1")'
            )
        if value is not None and len(value.get_secret_value()) < MIN_WEB_TOKEN:
            raise ValueError(f"must be at least {MIN_WEB_TOKEN} characters (a random string)")
        return value


class Settings(BaseSettings):
    """Everything the monitor can be told."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        hide_input_in_errors=True,
        case_sensitive=False,
    )

    ib: IBSettings = Field(default_factory=IBSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    summary: SummarySettings = Field(default_factory=SummarySettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    rules: RulesConfig = Field(default_factory=RulesConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first (where list keys also take comma- or space-separated text),
        then the keyword arguments: the file's data that :func:`load_settings` passes as
        ``Settings(**data)``."""
        return (ListFriendlyEnvSource(settings_cls), init_settings)

    @model_validator(mode="before")
    @classmethod
    def _decode_json_env(cls, data: Any) -> Any:
        """Decode JSON lists/tables given in the environment for deeply nested keys.

        pydantic-settings decodes JSON only two levels deep; ``[rules.<id>]`` tables sit deeper
        (``MARGIN_MONITOR_RULES__ALLOCATION_DRIFT__TARGETS='{"VOO": 0.5, "BND": 0.5}'``).
        """
        rules = data.get("rules") if isinstance(data, dict) else None
        if isinstance(rules, dict):
            for name, section in list(rules.items()):
                if isinstance(section, str) and section.strip()[:1] == "{":
                    with contextlib.suppress(ValueError):  # a whole [rules.<id>] as JSON
                        rules[name] = section = json.loads(section)
                if not isinstance(section, dict):
                    continue
                for key, value in section.items():
                    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
                        with contextlib.suppress(ValueError):
                            section[key] = json.loads(value)
        return data

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor."""
        values = [
            target.url.get_secret_value()
            for target in self.notify.all_targets()
            if not target.url.get_secret_value().startswith("console://")
        ]
        if self.notify.heartbeat_url is not None:
            values.append(self.notify.heartbeat_url.get_secret_value())
        if self.web.token is not None:
            values.append(self.web.token.get_secret_value())
        return values


# -- the environment ---------------------------------------------------------------------------

_LIST_TYPES = (list, tuple, set, frozenset)
_SCALARS = (str, int, float, bool, Path, SecretStr)
_SEPARATORS = re.compile(r"[\s,]+")


class ListFriendlyEnvSource(EnvSettingsSource):
    """The ``MARGIN_MONITOR_*`` variables, where a list key of plain values also takes text
    with the items separated by commas or spaces, as ``APPRISE_URLS`` does
    (``MARGIN_MONITOR_NOTIFY__URLS='json://a, json://b'``), besides JSON. A value that is
    neither names its variable and the form it needs (pydantic-settings would name only
    the section and its own source class)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # The one place every variable passes before pydantic-settings decodes it.
        loaded = super()._load_env_vars()
        return {name: _env_text(name, value) for name, value in loaded.items()}


def _env_text(name: str, value: str | None) -> str | None:
    """The variable's value as pydantic-settings should read it: a separated list as JSON."""
    if value is None or not name.lower().startswith(ENV_PREFIX.lower()):
        return value
    path = name[len(ENV_PREFIX) :].lower().split("__")
    kind = _annotation_at(Settings, path)
    if kind is None:
        return value  # not a key (an unknown one is reported by the validation)
    text = value.strip()
    if _is_scalar_list(kind):
        if text.startswith("["):
            _json_or_explain(name, text, "list")
            return value
        return json.dumps([item for item in _SEPARATORS.split(text) if item])
    if _is_table_or_table_list(kind):
        _json_or_explain(name, text, "tables" if get_origin(kind) in _LIST_TYPES else "table")
    return value


_FORMS = {
    "list": """a JSON list ('["a", "b"]') or items separated by commas or spaces ('a, b')""",
    "table": """a JSON table, e.g. '{"VOO": 0.5, "BND": 0.5}'""",
    "tables": """a JSON list of tables, e.g. '[{"url": "json://...", "severities": ["info"]}]'""",
}


def _json_or_explain(name: str, text: str, form: str) -> None:
    """Nothing when ``text`` is JSON; else the :class:`ConfigError` naming the variable."""
    try:
        json.loads(text)
    except ValueError:
        raise ConfigError(f"{name.upper()} cannot be read: it takes {_FORMS[form]}") from None


def _annotation_at(model: Any, path: list[str]) -> Any:
    """The type of the key at ``path`` below ``model`` (a pydantic model or a dataclass),
    ``None`` when there is no such key."""
    kind: Any = model
    for part in path:
        kind = _unwrap(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(part)
            kind = field.annotation if field is not None else None
        elif isinstance(kind, type) and dataclasses.is_dataclass(kind):
            kind = get_type_hints(kind).get(part)
        else:
            return None
        if kind is None:
            return None
    return _unwrap(kind)


def _unwrap(kind: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` as ``X``."""
    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
            continue
        others = [a for a in get_args(kind) if a is not type(None)]
        if origin in (Union, UnionType) and len(others) == 1:
            kind = others[0]
            continue
        return kind


def _is_scalar_list(kind: Any) -> bool:
    if get_origin(kind) not in _LIST_TYPES:
        return False
    items = [_unwrap(a) for a in get_args(kind) if a is not Ellipsis]
    return all(get_origin(item) is Literal or item in _SCALARS for item in items)


def _is_table_or_table_list(kind: Any) -> bool:
    origin = get_origin(kind)
    if origin is dict or kind is dict:
        return True
    if origin in _LIST_TYPES:
        return True  # a list of tables (plain lists were handled above)
    return isinstance(kind, type) and (
        issubclass(kind, BaseModel) or dataclasses.is_dataclass(kind)
    )


def config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The config file to read: ``--config``, else ``$MARGIN_MONITOR_CONFIG``, else none."""
    chosen = explicit or os.environ.get(CONFIG_ENV) or None
    return Path(chosen).expanduser() if chosen else None


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the TOML file (if any) and the environment; :class:`ConfigError` on any problem."""
    file_path = config_path(path)
    data = _read_toml(file_path) if file_path is not None else {}
    # A top-level key starting with "_" would reach pydantic-settings as one of its own
    # options (``_env_file``, ``_secrets_dir``...) instead of the data: refuse it like any
    # other unknown key.
    private = sorted(key for key in data if key.startswith("_"))
    if private:
        where = f" in {file_path}" if file_path else ""
        raise ConfigError(
            f"invalid configuration{where}: {private[0]}: unknown key "
            "(check the spelling against config.example.toml)"
        )
    try:
        settings = Settings(**data)
    except ValidationError as error:
        raise ConfigError(_describe(error, file_path)) from None
    except (ValueError, TypeError) as error:
        raise ConfigError(f"configuration: {error}") from None
    return _with_apprise_config_found(settings, file_path)


def _with_apprise_config_found(settings: Settings, file_path: Path | None) -> Settings:
    """``[notify] config`` made absolute (a relative path is read beside the configuration
    file) and checked to be a readable file; the settings unchanged without it."""
    given = settings.notify.config
    if given is None:
        return settings
    found = given.expanduser()
    if not found.is_absolute() and file_path is not None:
        found = file_path.parent / found
    found = found.absolute()
    where = "notify.config (set in the file or via MARGIN_MONITOR_NOTIFY__CONFIG)"
    if not found.is_file():
        problem = "is not a file" if found.exists() else "does not exist"
        raise ConfigError(f"{where}: the Apprise configuration file {found} {problem}")
    if not os.access(found, os.R_OK):
        raise ConfigError(f"{where}: the Apprise configuration file {found} is not readable")
    notify = settings.notify.model_copy(update={"config": found})
    return settings.model_copy(update={"notify": notify})


def heartbeat_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a heartbeat (ping) address, in words without any part of it;
    ``None`` when it is an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return "not a URL (expected http(s)://host/path, e.g. https://hc-ping.com/<uuid>)"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an http:// or https:// URL (e.g. https://hc-ping.com/<uuid>)"
    if not host:
        return "has no host (expected http(s)://host/path, e.g. https://hc-ping.com/<uuid>)"
    return None


#: Apprise schemes that post to a web address: their host is an address, not a key.
WEB_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms", "http", "https"})
#: Query keys whose values are credentials.
_CREDENTIAL_KEYS = re.compile(r"token|key|secret|pass|auth|sig|cred|session|pwd", re.I)


def url_holds_secret(url: str, *, path_is_secret: bool = True) -> bool:
    """Whether ``url`` carries a credential: a user or password, a credential-like query
    value, a key where a host would be (``tgram://<bot token>/...``) or, unless
    ``path_is_secret`` is False, a path (``json://host/hooks/<token>``). A bare web address
    (``json://127.0.0.1:8080/``) and ``console://`` carry none."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return True
    scheme = parts.scheme.lower()
    if scheme == "console":
        return False
    if parts.username or parts.password:
        return True
    if any(_CREDENTIAL_KEYS.search(key) for key, _ in parse_qsl(parts.query)):
        return True
    if scheme not in WEB_SCHEMES:
        return bool(parts.netloc or parts.path.strip("/"))
    return path_is_secret and bool(parts.path.strip("/"))


def file_secrets(data: Mapping[str, Any]) -> list[str]:
    """The secrets written in a configuration file's own text (its parsed TOML): notification
    URLs that carry a credential, a heartbeat URL with credentials in it, the web token. A
    value set only in the environment is not the file's."""
    notify: Mapping[str, Any] = _table(data, "notify")
    web: Mapping[str, Any] = _table(data, "web")
    urls = [url for url in notify.get("urls") or [] if isinstance(url, str)]
    urls += [
        target["url"]
        for target in notify.get("targets") or []
        if isinstance(target, dict) and isinstance(target.get("url"), str)
    ]
    found = [url for url in urls if url_holds_secret(url)]
    heartbeat = notify.get("heartbeat_url")
    if isinstance(heartbeat, str) and url_holds_secret(heartbeat, path_is_secret=False):
        found.append(heartbeat)
    if isinstance(web.get("token"), str) and web["token"]:
        found.append(web["token"])
    return found


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``data[key]`` when it is a table, else an empty one."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def insecure_permissions_warning(path: str | os.PathLike[str] | None) -> str | None:
    """A warning when the configuration file itself holds a secret (see
    :func:`file_secrets`) and is readable by other users, else ``None``: a file readable by
    all but holding no secret (the secrets in the environment, or none) is fine."""
    file_path = config_path(path)
    if file_path is None or not file_path.is_file():
        return None
    if not file_path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        return None
    try:
        data = _read_toml(file_path)
    except ConfigError:
        return None
    if not file_secrets(data):
        return None
    return (
        f"{file_path} holds secrets (a notification URL with a token, the web token...) and "
        f"is readable by other users; run: chmod 600 {file_path}"
    )


#: A configuration file is a few kilobytes; anything much larger is not one.
MAX_CONFIG_BYTES = 1_000_000


def _read_toml(file_path: Path) -> dict[str, Any]:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        fd = os.open(file_path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {file_path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"configuration file {file_path} is not readable") from None
    except OSError as error:
        raise ConfigError(f"configuration file {file_path}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise ConfigError(f"configuration file {file_path} is a directory")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"configuration file {file_path} is not a regular file")
        raw = handle.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"configuration file {file_path} is larger than 1 MB")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{file_path} is not UTF-8 text (byte {error.start}); save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{file_path} is not valid TOML: {error}") from None
    except RecursionError:
        raise ConfigError(f"{file_path} is nested too deeply to be a configuration") from None


def problems_message(problems: list[str], file_path: Path | None) -> str:
    """The one message for configuration problems: a count, then one line per problem."""
    where = f" in {file_path}" if file_path else ""
    plural = "s" if len(problems) > 1 else ""
    return f"invalid configuration{where}, {len(problems)} problem{plural}:\n  " + "\n  ".join(
        problems
    )


def _describe(error: ValidationError, file_path: Path | None) -> str:
    """One message listing each bad key and its problem, values left out."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            message = "unknown key (check the spelling against config.example.toml)"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        env_name = ENV_PREFIX + "__".join(str(part) for part in item["loc"]).upper()
        problems.append(f"{key}: {message} (set in the file or via {env_name})")
    return problems_message(problems, file_path)


# -- masking and describing --------------------------------------------------------------------


def mask_url(url: str) -> str:
    """How a secret URL is shown: its scheme, everything else masked (``tgram://***``)."""
    scheme, separator, _ = url.partition("://")
    if not url.strip():
        return "(empty)"
    return f"{scheme}://***" if separator and scheme else "***"


@dataclass(frozen=True, slots=True)
class SettingValue:
    """One effective key of ``config show``: its value (plain data, secrets masked) and where
    it came from: ``default``, ``file`` or ``environment`` (then ``variable`` names it)."""

    key: str
    value: Any
    source: Literal["default", "file", "environment"]
    variable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``config show --json``."""
        entry = {"value": self.value, "source": self.source}
        if self.variable is not None:
            entry["variable"] = self.variable
        return entry


def describe_settings(path: str | os.PathLike[str] | None) -> list[SettingValue]:
    """Every key of the effective configuration in file order (sections, then the rules),
    with its source; :class:`ConfigError` when the configuration is invalid."""
    settings = load_settings(path)
    file_path = config_path(path)
    data = _read_toml(file_path) if file_path is not None else {}
    variables = _environment_keys()
    described = []
    for key_path, value in _leaves(settings):
        variable = _set_by(variables, key_path)
        if variable is not None:
            source: Literal["default", "file", "environment"] = "environment"
        elif _found(data, key_path):
            source = "file"
        else:
            source = "default"
        described.append(SettingValue(".".join(key_path), _plain(value), source, variable))
    return described


def _leaves(settings: Settings) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(key path, value) of every key: a section's fields, each rule's fields."""
    for name in type(settings).model_fields:
        section = getattr(settings, name)
        if isinstance(section, BaseModel):
            for key in type(section).model_fields:
                yield (name, key), getattr(section, key)
        else:  # the rules: one dataclass per rule
            for rule in dataclasses.fields(section):
                config = getattr(section, rule.name)
                for setting in dataclasses.fields(config):
                    yield (name, rule.name, setting.name), getattr(config, setting.name)


def _environment_keys() -> dict[tuple[str, ...], tuple[str, str]]:
    """Key path -> (variable, value) of every ``MARGIN_MONITOR_*`` variable but the config
    file's own."""
    found = {}
    for name, value in os.environ.items():
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper != CONFIG_ENV:
            found[tuple(upper[len(ENV_PREFIX) :].lower().split("__"))] = (upper, value)
    return found


def _set_by(
    variables: Mapping[tuple[str, ...], tuple[str, str]], key: tuple[str, ...]
) -> str | None:
    """The variable that sets ``key``: its own, or one of a table above it that holds it as
    JSON (``MARGIN_MONITOR_IB='{"port": 4002}'``)."""
    if key in variables:
        return variables[key][0]
    for depth in range(len(key) - 1, 0, -1):
        above = variables.get(key[:depth])
        if above is None:
            continue
        with contextlib.suppress(ValueError):
            if _found(json.loads(above[1]), key[depth:]):
                return above[0]
    return None


def _found(data: Any, key: tuple[str, ...]) -> bool:
    """True when nested tables ``data`` hold ``key``."""
    for part in key:
        if not isinstance(data, Mapping) or part not in data:
            return False
        data = data[part]
    return True


def _plain(value: Any) -> Any:
    """``value`` as JSON-able data, every secret masked (a URL keeps its scheme)."""
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return mask_url(secret) if "://" in secret else "***"
    if isinstance(value, BaseModel):
        return {key: _plain(getattr(value, key)) for key in type(value).model_fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value
