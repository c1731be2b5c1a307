"""Tether's configuration: a TOML file, drop-ins merged in order, then CLI overrides.

The schema is a tree of dataclasses; loading walks it, so an unknown key or a value of the wrong
type fails with the dotted key named. ``ConfigError`` is what the CLI turns into exit code 2.
"""

from __future__ import annotations

import dataclasses
import glob
import ipaddress
import os
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin, get_type_hints

import tomli_w

from shim import tracing

DEFAULT_CONFIG_FILE = "/etc/tether/tether.toml"
DEFAULT_DROPIN_DIR = "/etc/tether/tether.d"

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
CGROUP_DRIVERS = ("cgroupfs", "systemd")
# The namespace-sharing policy (docs/namespaces.md): its modes, the kinds of sharing a rule
# governs and what a rule may say of them.
NS_POLICY_MODES = ("off", "audit", "enforce")
NS_SHARING_KINDS = ("host_network", "host_pid", "host_ipc", "host_user", "target_pid",
                    "pod_pid", "privileged_host")
NS_VERDICTS = ("allow", "deny", "audit")


class ConfigError(Exception):
    """A config file or flag that cannot be used; the message names the key (and file)."""


@dataclass
class PathsConfig:
    root: str = "/var/lib/tether"
    run: str = "/run/tether"


@dataclass
class ServerConfig:
    # The CRI socket; both RuntimeService and ImageService are served on it.
    listen: str = "/run/tether/tether.sock"
    # How long in-flight RPCs may run on after SIGTERM before they are cancelled.
    shutdown_grace_seconds: float = 10.0


@dataclass
class HandlerConfig:
    # OCI runtime binary (runc, crun) and its state root.
    path: str = ""
    root: str = ""


def _default_handlers() -> dict[str, HandlerConfig]:
    return {
        "runc": HandlerConfig(path="/usr/sbin/runc", root="/run/tether/runc"),
        "crun": HandlerConfig(path="/usr/bin/crun", root="/run/tether/crun"),
    }


@dataclass
class RuntimeConfig:
    default_handler: str = "runc"
    handlers: dict[str, HandlerConfig] = field(default_factory=_default_handlers)
    cgroup_driver: str = "cgroupfs"
    # Parent cgroup of pods that name none ("": /tether, or tether.slice with systemd).
    default_cgroup_parent: str = ""
    conmon: str = "/usr/bin/conmon"
    pause_holder: str = "/usr/bin/catatonit"
    pids_limit: int = 0  # 0: no limit from the runtime's side
    # Host paths of CRI mounts that must exist: refused instead of made as directories.
    absent_mount_sources_to_reject: list[str] = field(default_factory=list)


@dataclass
class NetworkConfig:
    conf_dir: str = "/etc/cni/net.d"
    plugin_dirs: list[str] = field(default_factory=lambda: ["/opt/cni/bin", "/usr/lib/cni"])
    plugin_timeout_seconds: float = 60.0


@dataclass
class ImagesConfig:
    # containers-registries.conf(5) v2 file; "" means built-in defaults (docker.io search).
    registries_conf: str = ""
    # containers-registries.conf.d(5) drop-ins (*.conf) read after it, e.g.
    # /etc/containers/registries.conf.d; "" reads none.
    registries_conf_dir: str = ""
    # auth.json-format credentials used when a PullImage request carries none.
    auth_file: str = ""
    insecure_registries: list[str] = field(default_factory=list)
    # registry host -> mirror hosts tried first, in order.
    mirrors: dict[str, list[str]] = field(default_factory=dict)
    pause_image: str = ""
    pull_progress_timeout_seconds: float = 300.0
    # Layers of one pull (and of all pulls together) downloaded and unpacked at once.
    max_concurrent_downloads: int = 3
    # certs.d directories: <dir>/<host[:port]>/*.crt CAs, *.cert/*.key client certificates.
    certs_dirs: list[str] = field(
        default_factory=lambda: ["/etc/containers/certs.d", "/etc/docker/certs.d"])


@dataclass
class MetricsConfig:
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 9090


@dataclass
class StreamingConfig:
    address: str = "127.0.0.1"  # where the Exec/PortForward URLs point (the kubelet proxies)
    port: int = 0  # 0: an ephemeral port, as CRI-O's default
    max_sessions: int = 100  # sessions at once; more are refused (503)
    idle_timeout_seconds: float = 14400.0  # a session with no data either way for this long
    # is closed (the kubelet's streamIdleTimeout default, 4 h)
    # TLS (PEM files; both or neither): https URLs, for an address beyond loopback. With a CA,
    # clients must present a certificate it signed (crictl and the kubelet's proxy present
    # none: docs/streaming.md).
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""


@dataclass
class LoggingConfig:
    level: str = "info"
    # auto: JSON lines when stderr is not a terminal, console output when it is.
    format: str = "auto"


@dataclass
class TracingConfig:
    # OpenTelemetry spans exported over OTLP/gRPC. Off: the SDK is not even imported.
    enabled: bool = False
    # The collector: host:port (plaintext, as a node-local agent), http:// or https:// URL.
    endpoint: str = "127.0.0.1:4317"
    # Share of new traces kept, 0..1; a trace the caller started (traceparent) keeps its
    # caller's choice.
    sampling_ratio: float = 1.0
    service_name: str = "tether"


@dataclass
class NamespaceRule:
    """One rule of [namespaces]: a kind of sharing, a verdict, and what it applies to. The
    match fields are optional and AND-ed; strings are shell-style globs (fnmatch)."""

    kind: str = ""  # one of NS_SHARING_KINDS
    verdict: str = ""  # one of NS_VERDICTS
    name: str = ""  # optional, named in denials and audit lines
    pod_namespaces: list[str] = field(default_factory=list)  # any of them ([]: any)
    labels: dict[str, str] = field(default_factory=dict)  # the pod's; every one must match
    annotations: dict[str, str] = field(default_factory=dict)  # the pod's; every one
    runtime_handlers: list[str] = field(default_factory=list)  # any of them ([]: any)


@dataclass
class NamespacesConfig:
    # off: no check, no audit line. audit: decisions recorded, nothing denied. enforce: deny
    # rules refuse the RPC (PERMISSION_DENIED).
    mode: str = "off"
    rules: list[NamespaceRule] = field(default_factory=list)  # in order; the first match wins
    audit_log: str = "/var/lib/tether/audit/namespaces.log"  # unset: <paths.root>/audit/...
    audit_log_max_bytes: int = 10 * 1024 * 1024  # rotated past this size
    audit_log_keep: int = 5  # rotated files kept: namespaces.log.1 .. .N


@dataclass
class UsernsConfig:
    # Pods that ask by annotation (io.tether.userns-mode: auto) get a block of auto_size
    # ids: auto_first_id + k * auto_size, k < auto_count (0: the annotation is refused).
    # Far above the ranges a kubelet hands out (from 65536, one block per pod it runs).
    auto_first_id: int = 2**31
    auto_size: int = 65536
    auto_count: int = 1024
    # How a container gets the image's files as its pod's: idmap (idmapped mounts: the
    # kernel (5.19+) and the file system under paths.root must have them), copy (copies of
    # the image's layers with shifted owners, per mapping: disk and time, any kernel),
    # auto (idmap where it works, else copy).
    rootfs: str = "auto"


@dataclass
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    namespaces: NamespacesConfig = field(default_factory=NamespacesConfig)
    userns: UsernsConfig = field(default_factory=UsernsConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


# Keys that SIGHUP applies without a restart.
LIVE_KEYS = frozenset({
    "logging.level", "logging.format",
    # read by the next pull (images.max_concurrent_downloads sizes a pool: restart)
    "images.registries_conf", "images.registries_conf_dir", "images.auth_file",
    "images.insecure_registries", "images.mirrors", "images.pause_image",
    "images.pull_progress_timeout_seconds", "images.certs_dirs",
    # the namespace-sharing policy: the next RunPodSandbox/CreateContainer decides by it
    "namespaces.mode", "namespaces.rules", "namespaces.audit_log",
    "namespaces.audit_log_max_bytes", "namespaces.audit_log_keep",
})


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, str(tp)
    )


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return the typed value."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"key '{key}': must be a table")
        return _build(tp, value, key)
    if origin is list:
        (item_tp,) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"key '{key}': must be {_describe(tp)}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, val_tp = get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(f"key '{key}': must be a table")
        return {
            str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items() if k != _ORIGIN
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"key '{key}': must be true or false (got {value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"key '{key}': must be an integer (got {value!r})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"key '{key}': must be a number (got {value!r})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"key '{key}': must be a string (got {value!r})")
        return value
    raise ConfigError(f"key '{key}': unsupported type {tp}")


def _build(cls: Any, data: Mapping[str, Any], prefix: str = "", base: Any = None) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names and key != _ORIGIN:
            dotted = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"unknown key '{dotted}'")
    obj = base if base is not None else cls()
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        setattr(obj, f.name, _coerce(data[f.name], hints[f.name], dotted))
    return obj


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge tables; later values win; lists are replaced, not appended (as CRI-O does)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e


def _check_listen(section: str, address: str, port: int, lowest: int) -> None:
    if not lowest <= port < 65536:
        raise ConfigError(f"key '{section}.port': must be {lowest}..65535 (got {port})")
    try:
        ipaddress.ip_address(address)
    except ValueError as e:
        raise ConfigError(
            f"key '{section}.address': must be an IP address (got {address!r})") from e


def _check_streaming_tls(st: StreamingConfig) -> None:
    if bool(st.tls_cert) != bool(st.tls_key):
        raise ConfigError("keys 'streaming.tls_cert' and 'streaming.tls_key': give both or "
                          "neither")
    if st.tls_ca and not st.tls_cert:
        raise ConfigError("key 'streaming.tls_ca': needs streaming.tls_cert and tls_key (a CA "
                          "checks clients of a TLS server)")
    for name in ("tls_cert", "tls_key", "tls_ca"):
        path = getattr(st, name)
        if path and not os.path.isabs(path):
            raise ConfigError(f"key 'streaming.{name}': must be an absolute path (got {path!r})")
        if path and not os.path.isfile(path):
            raise ConfigError(f"key 'streaming.{name}': no such file {path!r}")
    if st.tls_cert:  # a key that does not match, a file that is not PEM: told now, not later
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(st.tls_cert, st.tls_key)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f"keys 'streaming.tls_cert' / 'tls_key': cannot be used: {e}") from e
        try:
            if st.tls_ca:
                context.load_verify_locations(cafile=st.tls_ca)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f"key 'streaming.tls_ca': cannot be used: {e}") from e


def validate(cfg: Config) -> None:
    """Checks that span more than a type: enumerations, ranges, cross-references."""
    if cfg.logging.level not in LOG_LEVELS:
        raise ConfigError(
            f"key 'logging.level': must be one of {', '.join(LOG_LEVELS)} "
            f"(got {cfg.logging.level!r})"
        )
    if cfg.logging.format not in LOG_FORMATS:
        raise ConfigError(
            f"key 'logging.format': must be one of {', '.join(LOG_FORMATS)} "
            f"(got {cfg.logging.format!r})"
        )
    if cfg.runtime.cgroup_driver not in CGROUP_DRIVERS:
        raise ConfigError(
            f"key 'runtime.cgroup_driver': must be one of {', '.join(CGROUP_DRIVERS)} "
            f"(got {cfg.runtime.cgroup_driver!r})"
        )
    parent = cfg.runtime.default_cgroup_parent
    if parent and cfg.runtime.cgroup_driver == "cgroupfs" and not parent.startswith("/"):
        raise ConfigError(
            f"key 'runtime.default_cgroup_parent': the cgroupfs driver needs an absolute path "
            f"(got {parent!r})"
        )
    if parent and cfg.runtime.cgroup_driver == "systemd" and not parent.endswith(".slice"):
        raise ConfigError(
            f"key 'runtime.default_cgroup_parent': the systemd driver needs a slice name "
            f"(got {parent!r})"
        )
    if not cfg.runtime.handlers:
        raise ConfigError("key 'runtime.handlers': at least one runtime handler is needed")
    if cfg.runtime.default_handler not in cfg.runtime.handlers:
        raise ConfigError(
            f"key 'runtime.default_handler': {cfg.runtime.default_handler!r} is not one of "
            f"runtime.handlers ({', '.join(sorted(cfg.runtime.handlers))})"
        )
    for name, h in cfg.runtime.handlers.items():
        if not h.path:
            raise ConfigError(f"key 'runtime.handlers.{name}.path': must name the runtime binary")
        if not h.root:
            h.root = os.path.join(cfg.paths.run, name)
    _check_listen("metrics", cfg.metrics.address, cfg.metrics.port, lowest=1)
    _check_listen("streaming", cfg.streaming.address, cfg.streaming.port, lowest=0)
    if cfg.streaming.max_sessions < 1:
        raise ConfigError("key 'streaming.max_sessions': must be at least 1")
    if cfg.streaming.idle_timeout_seconds <= 0:
        raise ConfigError("key 'streaming.idle_timeout_seconds': must be positive")
    _check_streaming_tls(cfg.streaming)
    for key, value in (
        ("paths.root", cfg.paths.root),
        ("paths.run", cfg.paths.run),
        ("server.listen", cfg.server.listen),
        ("network.conf_dir", cfg.network.conf_dir),
    ):
        if not os.path.isabs(value):
            raise ConfigError(f"key '{key}': must be an absolute path (got {value!r})")
    if cfg.server.shutdown_grace_seconds < 0:
        raise ConfigError("key 'server.shutdown_grace_seconds': must be >= 0")
    if cfg.network.plugin_timeout_seconds <= 0:
        raise ConfigError("key 'network.plugin_timeout_seconds': must be > 0")
    if cfg.images.pull_progress_timeout_seconds <= 0:
        raise ConfigError("key 'images.pull_progress_timeout_seconds': must be > 0")
    if not 1 <= cfg.images.max_concurrent_downloads <= 64:
        raise ConfigError("key 'images.max_concurrent_downloads': must be 1..64")
    if cfg.runtime.pids_limit < 0:
        raise ConfigError("key 'runtime.pids_limit': must be >= 0 (0 = no limit)")
    _check_tracing(cfg.tracing)
    _check_namespaces(cfg.namespaces)
    _check_userns(cfg.userns)


USERNS_ROOTFS = ("auto", "idmap", "copy")


def _check_userns(u: UsernsConfig) -> None:
    _one_of("userns.rootfs", u.rootfs, USERNS_ROOTFS)
    if u.auto_first_id < 1:
        raise ConfigError("key 'userns.auto_first_id': must be at least 1 (0 is the node's "
                          "root)")
    if u.auto_size < 65536:
        raise ConfigError("key 'userns.auto_size': must be at least 65536 (the ids images and "
                          "runtimes use, up to nobody, 65534)")
    if u.auto_count < 0:
        raise ConfigError("key 'userns.auto_count': must be >= 0 (0: no annotation pods)")
    if u.auto_first_id + u.auto_size * u.auto_count > 2**32 - 1:
        raise ConfigError(
            "key 'userns.auto_count': auto_first_id + auto_size * auto_count goes past the "
            f"largest id ({2**32 - 2})")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"key '{key}': must be one of {', '.join(allowed)} (got {value!r})")


def _check_namespaces(ns: NamespacesConfig) -> None:
    _one_of("namespaces.mode", ns.mode, NS_POLICY_MODES)
    for i, rule in enumerate(ns.rules):
        key = f"namespaces.rules[{i}]"
        _one_of(f"{key}.kind", rule.kind, NS_SHARING_KINDS)
        _one_of(f"{key}.verdict", rule.verdict, NS_VERDICTS)
        for name in ("pod_namespaces", "runtime_handlers"):
            if any(not v for v in getattr(rule, name)):
                raise ConfigError(f"key '{key}.{name}': an empty string matches nothing")
        for name in ("labels", "annotations"):
            if any(not k for k in getattr(rule, name)):
                raise ConfigError(f"key '{key}.{name}': an empty key matches nothing")
    if not os.path.isabs(ns.audit_log):
        raise ConfigError(
            f"key 'namespaces.audit_log': must be an absolute path (got {ns.audit_log!r})")
    if ns.audit_log_max_bytes < 4096:
        raise ConfigError("key 'namespaces.audit_log_max_bytes': must be at least 4096")
    if not 0 <= ns.audit_log_keep <= 1000:
        raise ConfigError("key 'namespaces.audit_log_keep': must be 0..1000")


def _check_tracing(t: TracingConfig) -> None:
    # Checked when off too: turning it on later should not reveal an old typo.
    try:
        tracing.parse_endpoint(t.endpoint)
    except ValueError as e:
        raise ConfigError(f"key 'tracing.endpoint': {t.endpoint!r}: {e}") from None
    if not 0.0 <= t.sampling_ratio <= 1.0:
        raise ConfigError(
            f"key 'tracing.sampling_ratio': must be 0..1 (got {t.sampling_ratio:g})")
    if not t.service_name.strip():
        raise ConfigError("key 'tracing.service_name': must not be empty")
    if t.enabled and (missing := tracing.missing_packages()) is not None:
        raise ConfigError(
            f"key 'tracing.enabled': tracing needs the OpenTelemetry SDK and OTLP exporter, "
            f"not installed here: {missing} ({tracing.EXTRA_HINT})")


@dataclass(frozen=True)
class ConfigSources:
    """Where the effective config comes from; kept so SIGHUP can load it again."""

    file: str = DEFAULT_CONFIG_FILE
    file_required: bool = False
    dropin_dir: str = DEFAULT_DROPIN_DIR
    overrides: tuple[tuple[str, Any], ...] = ()


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def load(sources: ConfigSources) -> Config:
    """Defaults < main file < drop-ins in lexical order < CLI overrides."""
    # Handler tables merge with the built-in ones: a drop-in adds kata without losing runc.
    data: dict[str, Any] = {
        "runtime": {"handlers": {n: {"path": h.path} for n, h in _default_handlers().items()}}
    }
    if os.path.exists(sources.file) or sources.file_required:
        data = _merge(data, _with_file(sources.file, _read_toml(sources.file)))
    for path in sorted(glob.glob(os.path.join(sources.dropin_dir, "*.toml"))):
        data = _merge(data, _with_file(path, _read_toml(path)))
    for dotted, value in sources.overrides:
        _set_dotted(data, dotted, value)
    try:
        cfg = _build(Config, data)
        # Derived default: the socket follows the run dir unless set (handler roots: validate).
        if "listen" not in data.get("server", {}):
            cfg.server.listen = os.path.join(cfg.paths.run, "tether.sock")
        if "audit_log" not in data.get("namespaces", {}):  # likewise the audit log, the root
            cfg.namespaces.audit_log = os.path.join(cfg.paths.root, "audit", "namespaces.log")
        validate(cfg)
    except ConfigError as e:
        raise ConfigError(_origin(data, str(e))) from None
    return cfg


# Each file's tables are tagged with their origin, so an error can name the file.
_ORIGIN = "\0origin"


def _with_file(path: str, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        out[k] = _with_file(path, v) if isinstance(v, dict) else v
    out[_ORIGIN] = path
    return out


def _origin(data: dict[str, Any], message: str) -> str:
    """Prefix the message with the file that set the offending key, when known."""
    # The key is quoted in the message: follow it down the tables to the last origin tag.
    try:
        key = message.split("'")[1]
    except IndexError:
        return message
    node: Any = data
    origin = data.get(_ORIGIN)
    for part in key.split("[")[0].split("."):
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
        if isinstance(node, dict) and _ORIGIN in node:
            origin = node[_ORIGIN]
    return f"{origin}: {message}" if origin else message


def strip_origins(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: strip_origins(v) for k, v in data.items() if k != _ORIGIN}
    return data


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        dotted = f"{prefix}.{k}" if prefix else k
        if isinstance(v, Mapping):
            out.update(flatten(v, dotted))
        else:
            out[dotted] = v
    return out


def diff(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ: key -> (old, new)."""
    a, b = flatten(old.to_dict()), flatten(new.to_dict())
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
