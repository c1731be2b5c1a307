"""The import table of docs/architecture (../shared/design/ARCHITECTURE.md): packages import
downward only. Edges that break it today are listed in tests/unit/import_exceptions.txt,
each owned by the architecture issue (#14); a new breaking edge fails this test, and so does
a listed one that is gone (the list only shrinks)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXCEPTIONS = Path(__file__).with_name("import_exceptions.txt")
PACKAGES = ("shim", "podsandbox", "cni", "bench")
# The RPC edge: the handlers, the daemon that builds their Services and binds them, the
# interceptor and the server.
EDGE = ("shim.rpc", "shim.daemon", "shim.interceptor", "shim.server")


def _rules(importer: str, imported: str) -> str | None:
    """Why ``importer`` (a module) may not import ``imported``; None when it may."""
    top_from, top_to = importer.split(".")[0], imported.split(".")[0]
    if top_to not in PACKAGES:
        return None
    if top_from == "cni" and top_to != "cni":
        return "cni imports only itself"
    if top_from == "podsandbox" and top_to not in ("podsandbox", "cni"):
        return "podsandbox imports only itself and cni"
    if top_from == "bench" and top_to == "shim" and not imported.startswith("shim.cri"):
        return "bench talks CRI (shim.cri) only"
    if top_from == "shim" and not importer.startswith(EDGE) and imported.startswith("shim.rpc"):
        return "only shim.rpc is the RPC edge: nothing below imports it"
    if top_from in ("shim", "podsandbox", "cni") and imported.startswith("shim.cri") and \
            not importer.startswith((*EDGE, "shim.cri",
                                     # the client side of the edge (tether ns): facts out
                                     "shim.nsview.cri")):
        return "protobuf only at the RPC edge"
    return None


def edges() -> set[tuple[str, str, str]]:
    out = set()
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mod = mod.removesuffix(".__init__")
            if mod.startswith("shim.cri"):
                continue  # generated
            for node in ast.walk(ast.parse(path.read_text())):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    why = _rules(mod, name)
                    if why:
                        out.add((mod, name, why))
    return out


def _listed() -> set[tuple[str, str]]:
    out = set()
    for line in EXCEPTIONS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            importer, _, imported = line.partition(" -> ")
            out.add((importer.strip(), imported.strip()))
    return out


def test_no_new_import_breaks_the_layers() -> None:
    found = {(a, b): why for a, b, why in edges()}
    listed = _listed()
    new = sorted(f"{a} -> {b}  ({found[(a, b)]})" for a, b in set(found) - listed)
    gone = sorted(f"{a} -> {b}" for a, b in listed - set(found))
    assert not new, "imports that break the layer table:\n" + "\n".join(new)
    assert not gone, ("fixed, remove from import_exceptions.txt:\n" + "\n".join(gone))


# A pod's details are the sandbox manager's: outside podsandbox/ a pod is read through its
# views (podsandbox.views); only the store, which decodes records, names the class.
DETAILS_READERS = ("podsandbox", "shim.store.records")


def _modules(skip: tuple[str, ...]) -> Iterator[tuple[str, ast.Module]]:
    """(module name, its syntax tree) of every module of ours not under ``skip``."""
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            if not mod.startswith(skip):
                yield mod, ast.parse(path.read_text())


def test_sandbox_details_stay_in_podsandbox() -> None:
    found = [mod for mod, tree in _modules(DETAILS_READERS) for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.module == "podsandbox.types"
             and any(a.name == "SandboxDetails" for a in node.names)]
    assert not found, "modules that read a pod's details (use podsandbox.views): " + \
        ", ".join(found)


# A record's details are its manager's: the sandbox manager's (podsandbox), the container
# manager's (shim.containers), the image manager's (shim.images); the store decodes them.
# Anyone else reads a pod or a container through its views (podsandbox.views,
# shim.containers.views). ``x.details()`` (a grpc error's method) is not a record's; bench/
# is a CRI client with a ``details`` of its own results.
DETAILS_OWNERS = ("podsandbox", "shim.containers", "shim.images", "shim.store", "bench")


def test_record_details_are_read_only_by_their_managers() -> None:
    found = []
    for mod, tree in _modules(DETAILS_OWNERS):
        called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        found += [f"{mod}:{n.lineno}" for n in ast.walk(tree)
                  if isinstance(n, ast.Attribute) and n.attr == "details"
                  and id(n) not in called]
    assert not found, "record details read outside their manager (use its views): " + \
        ", ".join(found)
