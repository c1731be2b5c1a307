"""Config loading: defaults, file < drop-ins < flags, and errors that name the key (exit 2)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from shim import cli
from shim import config as c


def sources(tmp_path: Path, text: str | None = None, **kw: object) -> c.ConfigSources:
    f = tmp_path / "tether.toml"
    if text is not None:
        f.write_text(text)
    return c.ConfigSources(
        file=str(f), file_required=text is not None, dropin_dir=str(tmp_path / "d"), **kw
    )


def test_defaults_without_any_file(tmp_path: Path) -> None:
    cfg = c.load(sources(tmp_path))
    assert cfg.paths.root == "/var/lib/tether"
    assert cfg.server.listen == "/run/tether/tether.sock"
    assert cfg.runtime.default_handler == "runc"
    assert set(cfg.runtime.handlers) == {"runc", "crun"}
    assert cfg.runtime.cgroup_driver == "cgroupfs"
    assert cfg.network.plugin_dirs == ["/opt/cni/bin", "/usr/lib/cni"]
    assert (cfg.metrics.address, cfg.metrics.port) == ("127.0.0.1", 9090)


def test_run_dir_moves_socket_and_runtime_roots(tmp_path: Path) -> None:
    cfg = c.load(sources(tmp_path, '[paths]\nrun = "/x/run"\n'))
    assert cfg.server.listen == "/x/run/tether.sock"
    assert cfg.runtime.handlers["crun"].root == "/x/run/crun"


def test_dropins_merge_in_lexical_order_and_flags_win(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "20-b.toml").write_text('[logging]\nlevel = "error"\n')
    (d / "10-a.toml").write_text('[logging]\nlevel = "debug"\nformat = "json"\n')
    (d / "ignored.conf").write_text("not toml at all")
    cfg = c.load(sources(tmp_path, '[logging]\nlevel = "warning"\n'))
    assert (cfg.logging.level, cfg.logging.format) == ("error", "json")
    cfg = c.load(sources(tmp_path, "", overrides=(("logging.level", "info"),)))
    assert cfg.logging.level == "info"


def test_dropin_adds_a_handler_without_losing_defaults(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "50-kata.toml").write_text('[runtime.handlers.kata]\npath = "/usr/bin/kata"\n')
    cfg = c.load(sources(tmp_path))
    assert set(cfg.runtime.handlers) == {"runc", "crun", "kata"}
    assert cfg.runtime.handlers["kata"].root == "/run/tether/kata"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[runtime]\nbogus = 1\n", "unknown key 'runtime.bogus'"),
        ("nope = 1\n", "unknown key 'nope'"),
        ('[metrics]\nport = "x"\n', "key 'metrics.port': must be an integer"),
        ("[metrics]\nport = 70000\n", "key 'metrics.port': must be 1..65535"),
        ('[metrics]\naddress = "localhost:1"\n', "key 'metrics.address'"),
        ('[runtime]\ncgroup_driver = "foo"\n', "key 'runtime.cgroup_driver'"),
        ('[logging]\nlevel = "loud"\n', "key 'logging.level'"),
        ('[runtime]\ndefault_handler = "kata"\n', "key 'runtime.default_handler'"),
        ('[network]\nplugin_dirs = "/x"\n', "key 'network.plugin_dirs': must be a list"),
        ('[paths]\nroot = "relative"\n', "key 'paths.root': must be an absolute path"),
        ("[metrics]\nenabled = 1\n", "key 'metrics.enabled': must be true or false"),
        ("[images]\nmax_concurrent_downloads = 0\n",
         "key 'images.max_concurrent_downloads': must be 1..64"),
        ('[images]\ncerts_dirs = "/etc/x"\n', "key 'images.certs_dirs': must be a list"),
        ("[runtime.handlers.x]\nroot = '/r'\n", "key 'runtime.handlers.x.path'"),
        ('[userns]\nrootfs = "shift"\n', "key 'userns.rootfs': must be one of"),
        ("[userns]\nauto_size = 10\n", "key 'userns.auto_size': must be at least 65536"),
        ("[userns]\nauto_first_id = 0\n", "key 'userns.auto_first_id'"),
        ("[userns]\nauto_count = 100000\n", "key 'userns.auto_count'"),
    ],
)
def test_bad_values_name_the_key_and_file(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(c.ConfigError) as e:
        c.load(sources(tmp_path, text))
    assert fragment in str(e.value)
    assert str(tmp_path / "tether.toml") in str(e.value)


def test_error_in_a_dropin_names_the_dropin(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "10-x.toml").write_text("[images]\nmirors = {}\n")
    with pytest.raises(c.ConfigError, match=r"10-x\.toml: unknown key 'images\.mirors'"):
        c.load(sources(tmp_path))


def test_invalid_toml_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(c.ConfigError, match="not valid TOML"):
        c.load(sources(tmp_path, "[paths\n"))
    with pytest.raises(c.ConfigError, match="cannot read"):
        c.load(c.ConfigSources(file=str(tmp_path / "absent.toml"), file_required=True,
                               dropin_dir=str(tmp_path)))
    if os.geteuid() != 0:  # root reads through mode 000; use a directory instead
        return
    folder = tmp_path / "adir.toml"
    folder.mkdir()
    with pytest.raises(c.ConfigError, match="cannot read"):
        c.load(c.ConfigSources(file=str(folder), file_required=True, dropin_dir=str(tmp_path)))


@pytest.mark.parametrize(
    ("text", "key"),
    [("[runtime]\nbogus = 1\n", "runtime.bogus"), ("[metrics]\nport = -1\n", "metrics.port")],
)
def test_cli_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    f = tmp_path / "t.toml"
    f.write_text(text)
    for command in ("config", "serve"):
        rc = cli.main([command, "--config", str(f), "--config-dir", str(tmp_path / "none")])
        assert rc == 2
        assert key in capsys.readouterr().err


def test_cli_exits_2_for_an_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli.main(["serve", "--config", str(tmp_path / "missing.toml")])
    assert rc == 2
    assert "missing.toml" in capsys.readouterr().err


def test_cli_flag_with_bad_value_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli.main(["config", "--config-dir", str(tmp_path), "--cgroup-driver", "nope"])
    assert rc == 2
    assert "runtime.cgroup_driver" in capsys.readouterr().err


def test_config_command_prints_effective_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli.main(["config", "--config-dir", str(tmp_path), "--root", "/srv/t", "--log-level",
                   "debug"])
    assert rc == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["paths"]["root"] == "/srv/t"
    assert printed["logging"]["level"] == "debug"
    # What it prints loads back to the same config.
    again = tmp_path / "again.toml"
    again.write_text(c.Config().to_toml())
    assert c.load(c.ConfigSources(file=str(again), file_required=True,
                                  dropin_dir=str(tmp_path))) == c.Config()


def test_diff_lists_changed_keys(tmp_path: Path) -> None:
    a = c.load(sources(tmp_path))
    b = c.load(sources(tmp_path, '[logging]\nlevel = "debug"\n[metrics]\nport = 9100\n'))
    assert c.diff(a, b) == {"logging.level": ("info", "debug"), "metrics.port": (9090, 9100)}


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        ({"tls_cert": "{d}/c.pem"}, "give both or neither"),
        ({"tls_key": "{d}/k.pem"}, "give both or neither"),
        ({"tls_ca": "{d}/c.pem"}, "'streaming.tls_ca': needs streaming.tls_cert"),
        ({"tls_cert": "c.pem", "tls_key": "{d}/k.pem"}, "'streaming.tls_cert': must be an abs"),
        ({"tls_cert": "{d}/none.pem", "tls_key": "{d}/k.pem"}, "'streaming.tls_cert': no such"),
        ({"tls_cert": "{d}/c.pem", "tls_key": "{d}/k.pem"}, "cannot be used"),  # not PEM
    ],
)
def test_streaming_tls_is_checked_at_load(tmp_path: Path, keys: dict[str, str],
                                          fragment: str) -> None:
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("not a PEM file\n")
    text = "[streaming]\n" + "".join(f'{k} = "{v.format(d=tmp_path)}"\n' for k, v in keys.items())
    with pytest.raises(c.ConfigError) as e:
        c.load(sources(tmp_path, text))
    assert fragment in str(e.value)


def test_cli_version_is_the_version_rpc_s(capsys: pytest.CaptureFixture[str]) -> None:
    from shim.version import RUNTIME_VERSION

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"tether {RUNTIME_VERSION}\n"
