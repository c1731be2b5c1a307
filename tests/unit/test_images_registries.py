"""registries.conf: short-name candidates, v1 conversion, validation at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from shim.images import registries as r
from shim.images.reference import parse_name


def names(conf: r.RegistriesConf, text: str) -> list[str]:
    return [str(c) for c in r.candidates(conf, parse_name(text))]


def test_defaults_are_docker_hub() -> None:
    conf = r.load("")
    assert names(conf, "busybox") == ["docker.io/library/busybox:latest"]
    assert names(conf, "quay.io/x/y:1") == ["quay.io/x/y:1"]


def test_search_and_aliases() -> None:
    conf = r.parse_text(
        'unqualified-search-registries = ["reg.local:5000", "docker.io"]\n'
        '[aliases]\n"web" = "quay.io/org/web"\n'
    )
    assert names(conf, "busybox:1") == ["reg.local:5000/busybox:1", "docker.io/library/busybox:1"]
    assert names(conf, "web") == ["quay.io/org/web:latest"]
    assert names(conf, "web:2") == ["quay.io/org/web:2"]
    assert names(conf, "example.com/busybox") == ["example.com/busybox:latest"]


def test_empty_search_list_means_none() -> None:
    conf = r.parse_text("unqualified-search-registries = []\n")
    assert names(conf, "busybox") == []


@pytest.mark.parametrize(
    "text",
    [
        "not toml [",
        'unqualified-search-registries = "docker.io"',
        '[aliases]\n"a" = "b:1"',
        'short-name-mode = "bogus"',
        "registry = 3",
        '[registries.search]\nregistries = ["a"]\n[[registry]]\nlocation = "x"',
    ],
)
def test_bad_files(text: str) -> None:
    with pytest.raises(r.RegistriesConfError):
        r.parse_text(text, "/etc/x.conf")


def test_v1_is_converted() -> None:
    conf = r.parse_text(
        '[registries.search]\nregistries = ["a.io"]\n'
        '[registries.insecure]\nregistries = ["b.io"]\n'
        '[registries.block]\nregistries = ["c.io"]\n'
    )
    assert conf.search == ("a.io",)
    assert {"location": "b.io", "insecure": True} in conf.doc["registry"]
    assert {"location": "c.io", "blocked": True} in conf.doc["registry"]
    assert "registries" not in conf.doc


def test_registry_tables_are_validated_at_load() -> None:
    with pytest.raises(r.RegistriesConfError, match=r"/etc/x\.conf: .*pull-from-mirror"):
        r.parse_text(
            '[[registry]]\nlocation = "a.io"\n[[registry.mirror]]\nlocation = "m.io"\n'
            'pull-from-mirror = "sometimes"\n',
            "/etc/x.conf",
        )
    with pytest.raises(r.RegistriesConfError, match=r"/etc/x\.conf"):
        r.parse_text('[registries.insecure]\nregistries = ["http://a.io"]\n', "/etc/x.conf")


def test_dropins_merge_in_lexical_order(tmp_path: Path) -> None:
    """containers-registries.conf.d(5): a key a drop-in sets replaces the earlier value,
    [[registry]] tables with the same prefix are replaced and new ones added, aliases merge;
    only *.conf files count."""
    main = tmp_path / "registries.conf"
    main.write_text(
        'unqualified-search-registries = ["a.io"]\n'
        '[aliases]\n"x" = "a.io/x"\n"y" = "a.io/y"\n'
        '[[registry]]\nlocation = "a.io"\ninsecure = true\n'
        '[[registry]]\nlocation = "b.io"\n'
    )
    d = tmp_path / "registries.conf.d"
    d.mkdir()
    (d / "20-later.conf").write_text('unqualified-search-registries = ["c.io", "a.io"]\n')
    (d / "10-first.conf").write_text(
        '[aliases]\n"y" = "b.io/y"\n'
        '[[registry]]\nlocation = "a.io"\nblocked = true\n'
        '[[registry]]\nlocation = "d.io"\n'
    )
    (d / "ignored.txt").write_text("not toml [[[")
    conf = r.load(str(main), str(d))
    assert conf.search == ("c.io", "a.io")
    assert dict(conf.aliases) == {"x": "a.io/x", "y": "b.io/y"}
    regs = {e["location"]: dict(e) for e in conf.doc["registry"]}
    assert regs["a.io"] == {"location": "a.io", "blocked": True}  # replaced, not merged
    assert set(regs) == {"a.io", "b.io", "d.io"}
    assert "10-first.conf" in conf.path and "20-later.conf" in conf.path


def test_dropin_errors_name_the_dropin(tmp_path: Path) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "50-v1.conf").write_text('[registries.search]\nregistries = ["a.io"]\n')
    with pytest.raises(r.RegistriesConfError,
                       match=r"50-v1\.conf: drop-ins must use the version 2"):
        r.load("", str(d))
    (d / "50-v1.conf").write_text("[[registry]\n")
    with pytest.raises(r.RegistriesConfError, match=r"50-v1\.conf: not valid TOML"):
        r.load("", str(d))
    # a missing drop-in dir is no error (nothing to add)
    assert r.load("", str(tmp_path / "absent")).search is None
