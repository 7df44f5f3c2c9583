"""Configuration: a TOML file plus ``MARGIN_MONITOR_*`` environment overrides.

Precedence, highest first: environment (``MARGIN_MONITOR_IB__PORT=4002``), the TOML file named by
``--config`` or ``MARGIN_MONITOR_CONFIG``, then the defaults below. Anything invalid becomes one
:class:`ConfigError` whose message names the key and the problem and never echoes a value (an
Apprise URL holds tokens).

Whatever could only fail later is refused here: a file that is not a regular UTF-8 TOML file
(a FIFO would hang the read), nesting too deep to parse, unknown time zones, infinite or
absurdly long durations, paths with a NUL byte or a log file that is a directory. (Apprise
URLs are checked with Apprise's own parser by :func:`monitor.app.target_problems`.)
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

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
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from rules import RulesConfig
from rules.clock import parse_hhmm, parse_window, zone

ENV_PREFIX = "MARGIN_MONITOR_"
CONFIG_ENV = "MARGIN_MONITOR_CONFIG"
NotifySeverity = Literal["info", "warning", "critical"]
NOTIFY_SEVERITIES: tuple[NotifySeverity, ...] = ("info", "warning", "critical")


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


class IBSettings(_Section):
    """Where TWS or IB Gateway listens and which accounts to watch."""

    host: str = "127.0.0.1"
    port: int = Field(7497, ge=1, le=65535)
    client_id: int = Field(17, ge=0, le=2**31 - 1)
    accounts: list[str] = Field(default_factory=list)
    timeout: float = Field(10.0, gt=0, le=300)
    reconnect_min_seconds: float = Field(1.0, gt=0, le=3600)
    reconnect_max_seconds: float = Field(60.0, gt=0, le=3600)
    probe_after_seconds: float = Field(60.0, gt=0, le=3600)
    restart_window: str | None = None
    fundamentals: bool = True

    @field_validator("restart_window")
    @classmethod
    def _check_window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value


class NotifyTarget(_Section):
    """One Apprise URL and the severities it receives."""

    url: SecretStr
    severities: list[NotifySeverity] = Field(
        default_factory=lambda: list(NOTIFY_SEVERITIES)
    )
    name: str | None = None


class NotifySettings(_Section):
    """Where alerts go. ``urls`` receive every severity; ``targets`` route by severity."""

    urls: list[SecretStr] = Field(default_factory=list)
    targets: list[NotifyTarget] = Field(default_factory=list)
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

    _check_quiet_zone = field_validator("quiet_hours_timezone")(_time_zone)

    def all_targets(self) -> list[NotifyTarget]:
        """``urls`` (every severity) followed by the routed ``targets``."""
        return [NotifyTarget(url=url) for url in self.urls] + list(self.targets)


class MonitorSettings(_Section):
    """The daemon itself: state, logs, evaluation cadence."""

    state_dir: Path = Path("~/.local/state/margin-monitor")
    log_file: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"
    timezone: str | None = None
    evaluate_debounce_seconds: float = Field(0.05, ge=0, le=10)
    evaluate_every_seconds: float = Field(30.0, gt=0, le=3600)
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
        """Environment first, then the keyword arguments: the file's data that
        :func:`load_settings` passes as ``Settings(**data)``."""
        return (env_settings, init_settings)

    @model_validator(mode="before")
    @classmethod
    def _decode_json_env(cls, data: Any) -> Any:
        """Decode JSON lists/tables given in the environment for deeply nested keys.

        pydantic-settings decodes JSON only two levels deep; ``[rules.<id>]`` tables sit deeper
        (``MARGIN_MONITOR_RULES__ALLOCATION_DRIFT__TARGETS='{"VOO": 0.5, "BND": 0.5}'``).
        """
        rules = data.get("rules") if isinstance(data, dict) else None
        if isinstance(rules, dict):
            for section in rules.values():
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
        return Settings(**data)
    except ValidationError as error:
        raise ConfigError(_describe(error, file_path)) from None
    except (ValueError, TypeError) as error:
        raise ConfigError(f"configuration: {error}") from None


def insecure_permissions_warning(
    path: str | os.PathLike[str] | None, settings: Settings
) -> str | None:
    """A warning when a config file holding secrets is readable by other users, else ``None``."""
    file_path = config_path(path)
    if file_path is None or not settings.secrets() or not file_path.exists():
        return None
    mode = file_path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return (
            f"{file_path} holds notification secrets and is readable by other users; "
            f"run: chmod 600 {file_path}"
        )
    return None


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
