"""endpoints: containers-registries.conf(5) v2 pull rules, with Tether's mirrors/insecure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from shim.images import endpoints as ep
from shim.images import registries as r
from shim.images.reference import InvalidReference, Reference, parse

DIGEST = "sha256:" + "a" * 64


def regs(
    text: str = "",
    mirrors: Mapping[str, Sequence[str]] | None = None,
    insecure: Sequence[str] = (),
) -> ep.Registries:
    return ep.compile(r.parse_text(text, "/etc/containers/registries.conf"), mirrors, insecure)


def names(reg: ep.Registries, image: str) -> list[str]:
    return [e.name for e in ep.endpoints(reg, parse(image))]


def flags(reg: ep.Registries, image: str) -> list[tuple[str, bool, bool]]:
    return [(e.name, e.insecure, e.mirror) for e in ep.endpoints(reg, parse(image))]


def digested(image: str) -> str:
    return f"{image}@{DIGEST}"


# --- no entry -------------------------------------------------------------------------------


def test_no_entry_is_primary_only_and_secure() -> None:
    reg = ep.compile(r.RegistriesConf())
    assert ep.endpoints(reg, parse("busybox")) == [
        ep.Endpoint("docker.io", "library/busybox", insecure=False, mirror=False)
    ]
    assert ep.endpoints(reg, parse("quay.io/a/b:1"))[0].name == "quay.io/a/b"


def test_endpoint_name() -> None:
    assert ep.Endpoint("mirror.local:5000", "k8s/pause", False, True).name == (
        "mirror.local:5000/k8s/pause"
    )


def test_unrelated_entry_does_not_apply() -> None:
    reg = regs('[[registry]]\nlocation = "quay.io"\nblocked = true\n')
    assert names(reg, "quay.io.example.com/x") == ["quay.io.example.com/x"]
    assert names(reg, "docker.io/quay.io") == ["docker.io/library/quay.io"]


# --- matching -------------------------------------------------------------------------------


def test_exact_and_longest_prefix() -> None:
    reg = regs(
        '[[registry]]\nprefix = "example.com"\nlocation = "a.io"\n'
        '[[registry]]\nprefix = "example.com/foo"\nlocation = "b.io/x"\n'
        '[[registry]]\nprefix = "example.com/foo/bar"\nlocation = "c.io/y"\n'
    )
    assert names(reg, "example.com/img") == ["a.io/img"]
    assert names(reg, "example.com/foo/img") == ["b.io/x/img"]
    assert names(reg, "example.com/foo/bar/img") == ["c.io/y/img"]
    assert names(reg, "example.com/foo/bar") == ["c.io/y"]
    # "foo" is a path component, not a string prefix.
    assert names(reg, "example.com/foobar/img") == ["a.io/foobar/img"]
    assert names(reg, "example.com/foo/barn") == ["b.io/x/barn"]


def test_host_prefix_does_not_match_other_port_or_longer_host() -> None:
    reg = regs('[[registry]]\nlocation = "example.com"\nblocked = true\n')
    assert names(reg, "example.com:5000/x") == ["example.com:5000/x"]
    assert names(reg, "example.community/x") == ["example.community/x"]
    with pytest.raises(ep.Blocked):
        ep.endpoints(reg, parse("example.com/x"))


def test_first_of_equal_prefixes_wins() -> None:
    reg = regs(
        '[[registry]]\nprefix = "example.com/a"\nlocation = "one.io"\n'
        '[[registry]]\nprefix = "example.com/a/"\nlocation = "two.io"\n'
    )
    assert names(reg, "example.com/a/x") == ["one.io/x"]


def test_docker_io_prefix_needs_library_as_the_man_page_says() -> None:
    reg = regs(
        '[[registry]]\nprefix = "docker.io/library"\nlocation = "hub.local/lib"\n'
        '[[registry]]\nprefix = "docker.io/alpine"\nlocation = "other.local/alpine"\n'
    )
    assert names(reg, "alpine") == ["hub.local/lib/alpine"]
    assert names(reg, "docker.io/alpine/git") == ["other.local/alpine/git"]
    assert names(reg, "docker.io/user/x") == ["docker.io/user/x"]


def test_legacy_docker_hub_prefix_is_normalised() -> None:
    reg = regs('[[registry]]\nprefix = "index.docker.io"\nlocation = "hub.local"\n')
    assert names(reg, "busybox") == ["hub.local/library/busybox"]


def test_wildcard_matches_subdomains_only() -> None:
    reg = regs(
        '[[registry]]\nprefix = "*.example.com"\ninsecure = true\n'
        '[[registry.mirror]]\nlocation = "mirror.io/cache"\n'
    )
    assert flags(reg, "a.example.com/x/y") == [
        ("mirror.io/cache/x/y", False, True),
        ("a.example.com/x/y", True, False),  # no location: the name is used as is
    ]
    assert names(reg, "b.a.example.com:5000/x") == ["mirror.io/cache/x", "b.a.example.com:5000/x"]
    assert flags(reg, "example.com/x") == [("example.com/x", False, False)]
    assert names(reg, "a.example.com.evil.io/x") == ["a.example.com.evil.io/x"]
    assert names(reg, "notexample.com/x") == ["notexample.com/x"]


def test_wildcard_with_location_replaces_the_host() -> None:
    reg = regs('[[registry]]\nprefix = "*.example.com"\nlocation = "proxy.local/ex"\n')
    assert names(reg, "a.example.com/x/y:1") == ["proxy.local/ex/x/y"]


def test_precedence_exact_over_wildcard_and_longest_wildcard() -> None:
    reg = regs(
        '[[registry]]\nprefix = "*.example.com"\nlocation = "wild.io"\n'
        '[[registry]]\nprefix = "*.b.example.com"\nlocation = "wild-b.io"\n'
        '[[registry]]\nprefix = "a.example.com"\nlocation = "exact.io"\n'
        '[[registry]]\nprefix = "c.b.example.com/team"\nlocation = "team.io"\n'
    )
    assert names(reg, "a.example.com/x") == ["exact.io/x"]
    assert names(reg, "z.example.com/x") == ["wild.io/x"]
    assert names(reg, "c.b.example.com/x") == ["wild-b.io/x"]
    assert names(reg, "c.b.example.com/team/x") == ["team.io/x"]
    # A one-letter label ties "*.example.com" in length; the exact prefix still wins.
    reg2 = regs(
        '[[registry]]\nprefix = "*.example.com"\nblocked = true\n'
        '[[registry]]\nprefix = "q.example.com"\nlocation = "q.example.com"\n'
    )
    assert names(reg2, "q.example.com/x") == ["q.example.com/x"]


# --- location rewrite and mirrors -----------------------------------------------------------


def test_man_page_example() -> None:
    reg = regs(
        'unqualified-search-registries = ["example.com"]\n'
        '[[registry]]\nprefix = "example.com/foo"\ninsecure = false\nblocked = false\n'
        'location = "internal-registry-for-example.com/bar"\n'
        '[[registry.mirror]]\nlocation = "example-mirror-0.local/mirror-for-foo"\n'
        '[[registry.mirror]]\nlocation = "example-mirror-1.local/mirrors/foo"\ninsecure = true\n'
    )
    assert flags(reg, "example.com/foo/image:latest") == [
        ("example-mirror-0.local/mirror-for-foo/image", False, True),
        ("example-mirror-1.local/mirrors/foo/image", True, True),
        ("internal-registry-for-example.com/bar/image", False, False),
    ]


def test_mirror_with_path_for_a_host_prefix() -> None:
    reg = regs(
        '[[registry]]\nprefix = "registry.k8s.io"\nlocation = "registry.k8s.io"\n'
        '[[registry.mirror]]\nlocation = "mirror.local:5000/k8s/"\n'
    )
    assert names(reg, "registry.k8s.io/pause:3.9") == [
        "mirror.local:5000/k8s/pause",
        "registry.k8s.io/pause",
    ]
    first = ep.endpoints(reg, parse("registry.k8s.io/pause:3.9"))[0]
    assert (first.domain, first.path, first.mirror) == ("mirror.local:5000", "k8s/pause", True)


def test_location_defaults_to_prefix_and_prefix_to_location() -> None:
    reg = regs(
        '[[registry]]\nprefix = "a.io/ns"\n[[registry.mirror]]\nlocation = "m.io"\n'
        '[[registry]]\nlocation = "b.io"\n[[registry.mirror]]\nlocation = "n.io"\n'
    )
    assert names(reg, "a.io/ns/x") == ["m.io/x", "a.io/ns/x"]
    assert names(reg, "b.io/y/z") == ["n.io/y/z", "b.io/y/z"]


def test_rewrite_to_nothing_is_invalid() -> None:
    reg = regs('[[registry]]\nprefix = "a.io/ns/img"\nlocation = "b.io"\n')
    assert names(reg, "a.io/ns/img/sub") == ["b.io/sub"]
    with pytest.raises(InvalidReference, match=r"a\.io/ns/img"):
        ep.endpoints(reg, parse("a.io/ns/img"))


def test_docker_hub_mirror_keeps_library() -> None:
    reg = regs(mirrors={"docker.io": ["mirror.gcr.io"]})
    assert names(reg, "busybox") == ["mirror.gcr.io/library/busybox", "docker.io/library/busybox"]


# --- Tether's mirrors and insecure list (ported from the old render() tests) -----------------


def test_tether_mirrors_come_first() -> None:
    reg = regs(
        '[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
        '[[registry.mirror]]\nlocation = "old.mirror"\n'
        '[[registry.mirror]]\nlocation = "m2"\n',
        {"docker.io": ["m1:5000", "m2.io"], "quay.io": ["qm.io"]},
        ["m1:5000", "i.io"],
    )
    assert flags(reg, "busybox") == [
        ("m1:5000/library/busybox", True, True),
        ("m2.io/library/busybox", False, True),
        ("old.mirror/library/busybox", False, True),
        ("m2/library/busybox", False, True),
        ("docker.io/library/busybox", False, False),
    ]
    # No file entry for quay.io: one is created.
    assert flags(reg, "quay.io/a/b") == [("qm.io/a/b", False, True), ("quay.io/a/b", False, False)]
    # Insecure host with no entry at all.
    assert flags(reg, "i.io/x") == [("i.io/x", True, False)]


def test_tether_mirror_already_in_file_is_not_repeated() -> None:
    reg = regs(
        '[[registry]]\nlocation = "quay.io"\n'
        '[[registry.mirror]]\nlocation = "a.mirror"\n[[registry.mirror]]\nlocation = "b.mirror"\n',
        {"quay.io": ["b.mirror", "b.mirror"]},
    )
    assert names(reg, "quay.io/x") == ["b.mirror/x", "a.mirror/x", "quay.io/x"]


def test_tether_mirrors_join_the_exact_host_entry_only() -> None:
    # The longest prefix wins, as in the file; Tether's host mirrors go to the host entry.
    reg = regs(
        '[[registry]]\nprefix = "docker.io/library"\nlocation = "docker.io/library"\n'
        '[[registry.mirror]]\nlocation = "lib.mirror/lib"\n',
        {"docker.io": ["hub.mirror"]},
    )
    assert names(reg, "busybox") == ["lib.mirror/lib/busybox", "docker.io/library/busybox"]
    assert names(reg, "user/app") == ["hub.mirror/user/app", "docker.io/user/app"]


def test_tether_mirrors_honour_the_entry_settings() -> None:
    text = '[[registry]]\nlocation = "quay.io"\nmirror-by-digest-only = true\n'
    reg = regs(text, {"quay.io": ["qm.io"]})
    assert names(reg, "quay.io/x:1") == ["quay.io/x"]
    assert names(reg, digested("quay.io/x")) == ["qm.io/x", "quay.io/x"]
    blocked = regs('[[registry]]\nlocation = "quay.io"\nblocked = true\n', {"quay.io": ["q.io"]})
    with pytest.raises(ep.Blocked):
        ep.endpoints(blocked, parse("quay.io/x"))


def test_tether_insecure_applies_to_primary_and_mirrors_by_host() -> None:
    reg = regs(
        '[[registry]]\nprefix = "registry.k8s.io"\nlocation = "internal.local:5000/k8s"\n'
        '[[registry.mirror]]\nlocation = "mirror.local/k8s"\n'
        '[[registry.mirror]]\nlocation = "safe.local/k8s"\n',
        {"registry.k8s.io": ["fast.local:80/k8s"]},
        ["internal.local:5000", "mirror.local", "fast.local:80"],
    )
    assert flags(reg, "registry.k8s.io/pause") == [
        ("fast.local:80/k8s/pause", True, True),
        ("mirror.local/k8s/pause", True, True),
        ("safe.local/k8s/pause", False, True),
        ("internal.local:5000/k8s/pause", True, False),
    ]
    # The host must match with its port, exactly.
    reg2 = regs(insecure=["example.com"])
    assert flags(reg2, "example.com:5000/x") == [("example.com:5000/x", False, False)]
    assert flags(reg2, "example.com/x") == [("example.com/x", True, False)]


def test_tether_insecure_accepts_a_full_mirror_location() -> None:
    # The old render() compared mirror locations as written; that still works.
    reg = regs(mirrors={"docker.io": ["m.local/hub"]}, insecure=["m.local/hub"])
    assert flags(reg, "busybox")[0] == ("m.local/hub/library/busybox", True, True)


def test_tether_insecure_for_wildcard_without_location() -> None:
    reg = regs('[[registry]]\nprefix = "*.corp"\n', insecure=["a.corp:5000"])
    assert flags(reg, "a.corp:5000/x") == [("a.corp:5000/x", True, False)]
    assert flags(reg, "b.corp/x") == [("b.corp/x", False, False)]


def test_tether_wildcard_mirror_key() -> None:
    reg = regs(mirrors={"*.corp": ["cache.local/corp"]})
    assert names(reg, "a.corp/x") == ["cache.local/corp/x", "a.corp/x"]


def test_insecure_from_file() -> None:
    reg = regs(
        '[[registry]]\nlocation = "plain.local:5000"\ninsecure = true\n'
        '[[registry.mirror]]\nlocation = "tls.local"\n'
    )
    assert flags(reg, "plain.local:5000/x") == [
        ("tls.local/x", False, True),
        ("plain.local:5000/x", True, False),
    ]


# --- blocked --------------------------------------------------------------------------------


def test_blocked_names_registry_and_file() -> None:
    reg = regs('[[registry]]\nprefix = "evil.io/bad"\nlocation = "evil.io/bad"\nblocked = true\n')
    assert names(reg, "evil.io/good/x") == ["evil.io/good/x"]
    with pytest.raises(ep.Blocked, match=r"evil\.io.*blocked in /etc/containers/registries\.conf"):
        ep.endpoints(reg, parse("evil.io/bad/x"))


def test_blocked_without_a_file_path() -> None:
    conf = r.RegistriesConf(doc={"registry": [{"location": "x.io", "blocked": True}]})
    with pytest.raises(ep.Blocked, match="blocked in registries config"):
        ep.endpoints(ep.compile(conf), parse("x.io/y"))


def test_longer_unblocked_prefix_overrides_blocked_host() -> None:
    reg = regs(
        '[[registry]]\nlocation = "x.io"\nblocked = true\n'
        '[[registry]]\nprefix = "x.io/allowed"\nlocation = "x.io/allowed"\n'
    )
    assert names(reg, "x.io/allowed/a") == ["x.io/allowed/a"]
    with pytest.raises(ep.Blocked):
        ep.endpoints(reg, parse("x.io/other"))


# --- digest / tag rules ---------------------------------------------------------------------


def test_mirror_by_digest_only() -> None:
    reg = regs(
        '[[registry]]\nlocation = "quay.io"\nmirror-by-digest-only = true\n'
        '[[registry.mirror]]\nlocation = "m1.io"\n[[registry.mirror]]\nlocation = "m2.io"\n'
    )
    assert names(reg, "quay.io/x:1") == ["quay.io/x"]
    assert names(reg, digested("quay.io/x")) == ["m1.io/x", "m2.io/x", "quay.io/x"]
    # tag and digest together is a pull by digest.
    assert names(reg, digested("quay.io/x:1")) == ["m1.io/x", "m2.io/x", "quay.io/x"]


def test_pull_from_mirror() -> None:
    reg = regs(
        '[[registry]]\nlocation = "quay.io"\n'
        '[[registry.mirror]]\nlocation = "all.io"\npull-from-mirror = "all"\n'
        '[[registry.mirror]]\nlocation = "digest.io"\npull-from-mirror = "digest-only"\n'
        '[[registry.mirror]]\nlocation = "tag.io"\npull-from-mirror = "tag-only"\n'
        '[[registry.mirror]]\nlocation = "default.io"\n'
    )
    assert names(reg, "quay.io/x:1") == ["all.io/x", "tag.io/x", "default.io/x", "quay.io/x"]
    assert names(reg, digested("quay.io/x")) == [
        "all.io/x",
        "digest.io/x",
        "default.io/x",
        "quay.io/x",
    ]
    ref = Reference("quay.io", "x", "1", DIGEST)
    assert [e.name for e in ep.endpoints(reg, ref)][1] == "digest.io/x"


# --- version 1 files ------------------------------------------------------------------------


def test_v1_file_behaves() -> None:
    reg = regs(
        '[registries.search]\nregistries = ["a.io"]\n'
        '[registries.insecure]\nregistries = ["b.io:5000", "c.io"]\n'
        '[registries.block]\nregistries = ["c.io"]\n'
    )
    assert flags(reg, "b.io:5000/x") == [("b.io:5000/x", True, False)]
    assert flags(reg, "a.io/x") == [("a.io/x", False, False)]
    with pytest.raises(ep.Blocked, match=r"c\.io"):
        ep.endpoints(reg, parse("c.io/x"))


def test_v1_file_with_tether_mirrors() -> None:
    reg = regs('[registries.insecure]\nregistries = ["b.io"]\n', {"b.io": ["m.io"]})
    assert flags(reg, "b.io/x") == [("m.io/x", False, True), ("b.io/x", True, False)]


# --- invalid entries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[[registry]]\nlocation = 5\n", "location must be a string"),
        ('[[registry]]\nprefix = ["a"]\nlocation = "a.io"\n', "prefix must be a string"),
        ("[[registry]]\ninsecure = true\n", "neither prefix nor location"),
        ('[[registry]]\nlocation = "https://a.io"\n', "URI schemes"),
        ('[[registry]]\nprefix = "example.*.com"\nlocation = "a.io"\n', "wildcard"),
        ('[[registry]]\nprefix = "*.example.com/foo"\nlocation = "a.io"\n', "wildcard"),
        ('[[registry]]\nprefix = "*.example.com:5000"\nlocation = "a.io"\n', "wildcard"),
        ('[[registry]]\nprefix = "a.io/*"\nlocation = "a.io"\n', "wildcard"),
        ('[[registry]]\nlocation = "no_host"\n', "registry host"),
        ('[[registry]]\nlocation = "a.io:port"\n', "registry host"),
        ('[[registry]]\nlocation = "a.io/Upper"\n', "lowercase"),
        ('[[registry]]\nlocation = "a.io/x:tag"\n', "tag or digest"),
        (f'[[registry]]\nprefix = "a.io/x@{DIGEST}"\nlocation = "a.io"\n', "tag or digest"),
        ('[[registry]]\nlocation = "a.io"\ninsecure = "yes"\n', "insecure must be true or false"),
        ('[[registry]]\nlocation = "a.io"\nblocked = 1\n', "blocked must be true or false"),
        ('[[registry]]\nlocation = "a.io"\nmirror = "m.io"\n', "array of tables"),
        ('[[registry]]\nlocation = "a.io"\n[[registry.mirror]]\ninsecure = true\n', "no location"),
        (
            '[[registry]]\nlocation = "a.io"\n[[registry.mirror]]\nlocation = "m.io"\n'
            'pull-from-mirror = "never"\n',
            "pull-from-mirror must be one of",
        ),
        (
            '[[registry]]\nlocation = "a.io"\nmirror-by-digest-only = true\n'
            '[[registry.mirror]]\nlocation = "m.io"\npull-from-mirror = "all"\n',
            "mirror-by-digest-only",
        ),
        ('[[registry]]\nlocation = "a.io"\npull-from-mirror = "all"\n', "[[registry.mirror]]"),
        (
            '[[registry]]\nlocation = "a.io"\n[[registry.mirror]]\nlocation = "m.io"\n'
            'insecure = "no"\n',
            "insecure must be true or false",
        ),
        (
            '[[registry]]\nlocation = "a.io"\ninsecure = true\n'
            '[[registry]]\nprefix = "b.io"\nlocation = "a.io"\n',
            "conflicting 'insecure'",
        ),
        (
            '[[registry]]\nlocation = "a.io"\nblocked = true\n'
            '[[registry]]\nprefix = "b.io"\nlocation = "a.io"\n',
            "conflicting 'blocked'",
        ),
    ],
)
def test_invalid_entries_name_the_file(text: str, needle: str) -> None:
    with pytest.raises(r.RegistriesConfError) as info:
        r.parse_text(text, "/etc/containers/registries.conf")
    message = str(info.value)
    assert message.startswith("/etc/containers/registries.conf: ")
    assert needle in message


def test_invalid_entry_message_names_the_entry() -> None:
    with pytest.raises(r.RegistriesConfError, match=r"\[\[registry\]\] #2 \('b\.io'\)"):
        r.parse_text(
            '[[registry]]\nlocation = "a.io"\n[[registry]]\nlocation = "b.io"\nblocked = 3\n',
            "/f.conf",
        )


def test_compile_reports_a_bad_doc_too() -> None:
    conf = r.RegistriesConf(doc={"registry": [{"location": 1}]}, path="/f.conf")
    with pytest.raises(r.RegistriesConfError, match=r"^/f\.conf: .*location must be a string"):
        ep.compile(conf)


@pytest.mark.parametrize(
    ("mirrors", "needle"),
    [
        ({"https://docker.io": ["m.io"]}, "URI schemes"),
        ({"docker.io": ["http://m.io"]}, "URI schemes"),
        ({"docker.io": [""]}, "empty mirror location"),
        ({"docker.io": ["bad host"]}, "registry host"),
    ],
)
def test_bad_tether_mirrors(mirrors: Mapping[str, Sequence[str]], needle: str) -> None:
    with pytest.raises(r.RegistriesConfError, match=r"\[images\] mirrors") as info:
        ep.compile(r.RegistriesConf(), mirrors)
    assert needle in str(info.value)


def test_validate() -> None:
    ep.validate(r.parse_text('[[registry]]\nlocation = "a.io"\n'))
    with pytest.raises(r.RegistriesConfError):
        ep.validate(r.RegistriesConf(doc={"registry": [{"prefix": "*.a.io/x"}]}))


def test_location_hosts_are_checked_for_syntax_only() -> None:
    reg = regs(
        '[[registry]]\nlocation = "quay.io"\n'
        '[[registry.mirror]]\nlocation = "registry-cache"\n'
        '[[registry.mirror]]\nlocation = "[fd00::1]:5000/q"\n'
        '[[registry.mirror]]\nlocation = "localhost:5000"\n'
    )
    assert names(reg, "quay.io/a/b") == [
        "registry-cache/a/b",
        "[fd00::1]:5000/q/a/b",
        "localhost:5000/a/b",
        "quay.io/a/b",
    ]
