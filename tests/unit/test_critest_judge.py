"""Judging a critest report against tests/conformance/pending.txt (pure)."""

from __future__ import annotations

import pytest

from tests.rig.critest import SpecResult, judge, load_pending, parse_pending, parse_report


def _spec(leaf: str, state: str, msg: str = "") -> dict[str, object]:
    return {"LeafNodeType": "It", "ContainerHierarchyTexts": ["[k8s.io] Box", ""],
            "LeafNodeText": leaf, "State": state,
            "Failure": {"Message": msg} if msg else None}


REPORT = [{"SpecReports": [
    {"LeafNodeType": "BeforeSuite", "State": "passed"},
    _spec("a", "passed"),
    _spec("b", "failed", "rpc error: code = Unimplemented\nmore"),
    _spec("c", "skipped"),  # --ginkgo.skip
    _spec("d", "skipped", "feature not reported"),  # Skip() in the spec
    _spec("e", "skipped", "NRI socket not configured"),
]}]


def test_parse_report_names_states_and_first_lines() -> None:
    rs = parse_report(REPORT)
    assert [r.name for r in rs] == [f"[k8s.io] Box {x}" for x in "abcde"]
    b = rs[1]
    assert b.failed and b.message == "rpc error: code = Unimplemented"
    assert not rs[2].by_spec and rs[3].by_spec


def test_judge_rules() -> None:
    rs = parse_report(REPORT)
    v = judge(rs, {}, [r"NRI"])
    assert not v.ok
    assert [r.name for r in v.unexpected_failures] == ["[k8s.io] Box b"]
    assert [r.name for r in v.unexpected_skips] == ["[k8s.io] Box d"]
    pending = {"[k8s.io] Box b": "#12", "[k8s.io] Box d": "#16"}
    v = judge(rs, pending, [r"NRI"])
    assert v.ok, v.explain()
    assert v.counts == {"passed": 1, "failed": 1, "skipped": 3, "pending": 2, "host_skipped": 1}


def test_a_pending_spec_that_passes_or_vanished_fails_the_stage() -> None:
    rs = [SpecResult("x", "passed", "", False)]
    v = judge(rs, {"x": "#12", "gone": "#16"})
    assert v.stale_pending == ["x"] and v.missing_pending == ["gone"]
    assert "remove the line" in v.explain()


def test_pending_file_format() -> None:
    text = "# comment\n\n[k8s.io] A spec [Conformance]  #12\nother spec #16\n"
    assert parse_pending(text) == {"[k8s.io] A spec [Conformance]": "#12", "other spec": "#16"}
    with pytest.raises(ValueError, match="no owning issue"):
        parse_pending("a spec without owner\n")
    with pytest.raises(ValueError, match="twice"):
        parse_pending("x #1\nx #2\n")


def test_the_checked_in_list_names_only_open_issues_that_own_such_specs() -> None:
    owners = {"#12": "Streaming", "#16": "UserNamespaces"}
    for name, issue in load_pending().items():
        assert issue in owners, (name, issue)
        assert owners[issue] in name, (name, issue)
