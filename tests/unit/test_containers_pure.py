"""Pure parts of the container layer: the CRI log format and conmon's command line."""

from __future__ import annotations

from shim.containers import logs
from shim.oci import conmon
from shim.oci.runtime import OCIRuntime


def test_parse_cri_log_lines() -> None:
    line = logs.parse_line("2026-11-22T20:00:00.123456789Z stdout F hello world")
    assert line == logs.LogLine("2026-11-22T20:00:00.123456789Z", "stdout", False, "hello world")
    assert logs.parse_line("2026-11-22T20:00:00Z stderr P part").partial is True  # type: ignore[union-attr]
    assert logs.parse_line("2026-11-22T20:00:00Z stdout F ") is not None
    assert logs.parse_line("garbage") is None
    assert logs.parse_line("ts other F x") is None


def test_conmon_argv() -> None:
    paths = conmon.MonitorPaths("/b", "/l/0.log", "/x", "/b", "/s", "/b/pid", "/b/conmon.pid")
    rt = OCIRuntime("crun", "/usr/bin/crun", "/run/t/crun")
    argv = conmon.conmon_argv("/usr/bin/conmon", rt, "cid", "name", paths, tty=True,
                              stdin=True, stdin_once=False)
    assert argv[:3] == ["/usr/bin/conmon", "--api-version", "1"]
    pairs = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert pairs["--runtime"] == "/usr/bin/crun"
    assert "--runtime-arg" in argv and "--root=/run/t/crun" in argv
    assert "k8s-file:/l/0.log" in argv
    assert {"--terminal", "--stdin", "--leave-stdin-open"} <= set(argv)
    once = conmon.conmon_argv("/c", rt, "cid", "n", paths, stdin=True, stdin_once=True)
    assert "--leave-stdin-open" not in once and "--terminal" not in once
