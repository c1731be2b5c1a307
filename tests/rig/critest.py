"""The ecosystem's own CRI clients (critest, crictl): finding them, running critest, and
judging its report against the checked-in list of pending specs.

Tools are looked up as ``$CRITEST`` / ``$CRICTL``, then ``PATH``, then
``../shared/tools/bin`` beside the checkout. The judging is pure (unit-tested).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_BIN = REPO_ROOT.parent / "shared" / "tools" / "bin"
PENDING_FILE = REPO_ROOT / "tests" / "conformance" / "pending.txt"

HOW_TO_GET = {
    "critest": "build cri-tools (`make binaries`, Go >= 1.26) or take a cri-tools release, "
               "then put critest on PATH or set CRITEST=/path/to/critest",
    "crictl": "build cri-tools (`make binaries`) or take a cri-tools release, then put "
              "crictl on PATH or set CRICTL=/path/to/crictl",
    "buildah": "apt-get install buildah (scripts/install-deps.sh does), or set "
               "BUILDAH=/path/to/buildah",
}


def find_tool(name: str) -> str | None:
    """$NAME (upper case), then PATH, then ../shared/tools/bin; None when absent."""
    env = os.environ.get(name.upper())
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    shared = SHARED_BIN / name
    return str(shared) if os.access(shared, os.X_OK) else None


def missing_tool_message(name: str) -> str:
    return f"{name} not found ($" + name.upper() + f", PATH, {SHARED_BIN}): {HOW_TO_GET[name]}"


def require_tool(name: str) -> str:
    """The tool's path; without it the test says so in one line: a skip, or under
    ``CI=true`` a failure (a stage must never pass by not running)."""
    import pytest

    found = find_tool(name)
    if found is None:
        msg = missing_tool_message(name)
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return found


# ------------------------------------------------------------------ the report


@dataclass(frozen=True)
class SpecResult:
    name: str      # hierarchy texts and leaf text, joined by spaces (as ginkgo prints them)
    state: str     # passed, failed, skipped, pending, panicked, timedout, interrupted, aborted
    message: str   # failure or skip message, first line
    by_spec: bool  # skipped by the spec itself (it called Skip), not by --ginkgo.skip

    @property
    def ok(self) -> bool:
        return self.state == "passed"

    @property
    def failed(self) -> bool:
        return self.state in ("failed", "panicked", "timedout", "interrupted", "aborted")


def parse_report(data: object) -> list[SpecResult]:
    """The It specs of a ginkgo JSON report (``--ginkgo.json-report``)."""
    out = []
    suites = data if isinstance(data, list) else [data]
    for suite in suites:
        for spec in suite.get("SpecReports") or []:
            if spec.get("LeafNodeType") != "It":
                continue
            texts = [*(spec.get("ContainerHierarchyTexts") or []), spec.get("LeafNodeText", "")]
            name = " ".join(t for t in texts if t)
            failure = spec.get("Failure") or {}
            message = (failure.get("Message") or "").strip()
            state = spec.get("State", "")
            out.append(SpecResult(
                name=name, state=state, message=message.splitlines()[0] if message else "",
                by_spec=state == "skipped" and bool(message),
            ))
    return out


def load_report(path: Path) -> list[SpecResult]:
    return parse_report(json.loads(path.read_text()))


# ------------------------------------------------------------------ pending specs


_PENDING_LINE = re.compile(r"^(?P<name>.+?)\s+(?P<issue>#\d+)\s*$")


def parse_pending(text: str) -> dict[str, str]:
    """``spec name  #issue`` per line (blank lines and ``#`` comments ignored) ->
    {spec name: issue}. A line without an owning issue is an error."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _PENDING_LINE.match(line)
        if not m:
            raise ValueError(f"pending.txt line {n}: no owning issue (`<spec name>  #N`): {raw!r}")
        if m["name"] in out:
            raise ValueError(f"pending.txt line {n}: {m['name']!r} listed twice")
        out[m["name"]] = m["issue"]
    return out


def load_pending(path: Path = PENDING_FILE) -> dict[str, str]:
    return parse_pending(path.read_text()) if path.exists() else {}


@dataclass
class Verdict:
    counts: dict[str, int]
    unexpected_failures: list[SpecResult] = field(default_factory=list)
    unexpected_skips: list[SpecResult] = field(default_factory=list)  # skipped by the spec
    stale_pending: list[str] = field(default_factory=list)  # listed, but passed
    missing_pending: list[str] = field(default_factory=list)  # listed, not in the report

    @property
    def ok(self) -> bool:
        return not (self.unexpected_failures or self.unexpected_skips or self.stale_pending
                    or self.missing_pending)

    def summary(self) -> str:
        c = self.counts
        return (f"critest: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped "
                f"({c['pending']} of them pending, {c['host_skipped']} skipped on purpose: "
                "not runnable here, or benchmarks)")

    def explain(self) -> str:
        lines = [self.summary()]
        for r in self.unexpected_failures:
            lines.append(f"FAILED (not pending): {r.name}\n    {r.message}")
        for r in self.unexpected_skips:
            lines.append(f"SKIPPED by the spec (not pending): {r.name}\n    {r.message}")
        for n in self.stale_pending:
            lines.append(f"PASSED but listed in pending.txt (remove the line): {n}")
        for n in self.missing_pending:
            lines.append(f"listed in pending.txt but not in the report: {n}")
        return "\n".join(lines)


def judge(results: Iterable[SpecResult], pending: Mapping[str, str],
          expected_self_skips: Iterable[str] = ()) -> Verdict:
    """Every spec must pass, except: specs in ``pending`` (failed or skipped by the spec;
    passing while listed is an error, so the list cannot go stale), specs skipped by
    ``--ginkgo.skip`` (what this host cannot run), and specs whose own skip message matches
    one of ``expected_self_skips`` (regexes)."""
    results = list(results)
    allowed = [re.compile(p) for p in expected_self_skips]
    counts = {"passed": 0, "failed": 0, "skipped": 0, "pending": 0, "host_skipped": 0}
    v = Verdict(counts)
    seen = set()
    for r in results:
        seen.add(r.name)
        listed = r.name in pending
        if r.ok:
            counts["passed"] += 1
            if listed:
                v.stale_pending.append(r.name)
        elif r.failed:
            counts["failed"] += 1
            if listed:
                counts["pending"] += 1
            else:
                v.unexpected_failures.append(r)
        elif r.state in ("skipped", "pending"):
            counts["skipped"] += 1
            if listed:
                counts["pending"] += 1
            elif not r.by_spec:
                counts["host_skipped"] += 1
            elif not any(p.search(r.message) for p in allowed):
                v.unexpected_skips.append(r)
    v.missing_pending = sorted(n for n in pending if n not in seen)
    return v
