#!/usr/bin/env python3
"""Checks the structure rules the compiler and clippy do not:

- every Rust source file opens with a `//!` module doc;
- no source file outside `testkit/`, `tests/` and `benches/` is over 800 lines;
- no module cycles inside a crate: the graph of `crate::a::b` references between the
  modules of one crate (comments and doc text ignored) has no cycle;
- a `[profile.<p>.package.<member>]` override of a workspace member that has binaries
  repeats the profile's `strip`: cargo does not carry `strip` into such an override, so the
  binary would ship with its symbol table (the bot did, 3.9 MB of it, from 92a2421 to the
  fix).

Exit code 1 and one line per finding when a rule is broken. Run by scripts/test.sh.
"""
import os
import re
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 800
CRATES = ["common", "daemon", "bot", "testkit", "demo"]
PATH_RE = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)")
GROUP_RE = re.compile(r"\bcrate::\{([^}]*)\}")


def strip_comments(text):
    out = []
    for line in text.splitlines():
        s = line.lstrip()
        if s.startswith("//"):
            out.append("")
            continue
        # drop a trailing // comment (good enough: we never put // in a string next to crate::)
        idx = line.find("//")
        if idx >= 0 and '"' not in line[:idx]:
            line = line[:idx]
        out.append(line)
    return "\n".join(out)


def module_of(src_dir, path):
    """`bot/src/chat/core.rs` -> ('chat', 'core'); mod.rs and lib.rs/main.rs name their folder."""
    rel = os.path.relpath(path, src_dir)
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod",):
        parts = parts[:-1]
    if parts in (["lib"], ["main"]) or parts[0] == "bin":
        return ()
    return tuple(parts)


def known_modules(files, src_dir):
    return {module_of(src_dir, f) for f in files}


def resolve(mods, parts):
    """Longest known module prefix of a path (a path may end in an item name)."""
    for n in range(len(parts), 0, -1):
        if tuple(parts[:n]) in mods:
            return tuple(parts[:n])
    return None


def top_level(mod):
    return mod[:1]


def check_crate(crate, findings):
    src_dir = os.path.join(ROOT, crate, "src")
    if not os.path.isdir(src_dir):
        return
    files = []
    for dirpath, _, names in os.walk(src_dir):
        for n in names:
            if n.endswith(".rs"):
                files.append(os.path.join(dirpath, n))
    mods = known_modules(files, src_dir)
    edges = {}
    for f in files:
        me = module_of(src_dir, f)
        text = strip_comments(open(f, encoding="utf-8").read())
        refs = set()
        for m in PATH_RE.finditer(text):
            kind, rest = m.group(1), m.group(2)
            parts = [p for p in rest.split("::") if p]
            if kind == "super":
                base = list(me[:-1]) if not f.endswith("mod.rs") else list(me[:-1])
                parts = base + parts
            target = resolve(mods, parts)
            if target is not None:
                refs.add(target)
        for m in GROUP_RE.finditer(text):
            for item in m.group(1).split(","):
                item = item.strip().split("::")
                target = resolve(mods, [p.strip() for p in item if p.strip()])
                if target is not None:
                    refs.add(target)
        for t in refs:
            # a module may use its own children and its ancestors' items freely only when
            # that does not close a loop; we compare siblings at the shallowest differing level
            a, b = me, t
            i = 0
            while i < min(len(a), len(b)) and a[i] == b[i]:
                i += 1
            if i >= len(a) or i >= len(b):
                continue  # parent <-> child: part of the same module tree
            src, dst = a[: i + 1], b[: i + 1]
            edges.setdefault(src, set()).add(dst)
    # cycle search
    color = {}
    stack = []

    def dfs(n):
        color[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if color.get(m) == 1:
                cyc = stack[stack.index(m):] + [m]
                findings.append(
                    f"{crate}: module cycle " + " -> ".join("::".join(c) for c in cyc)
                )
            elif color.get(m) is None:
                dfs(m)
        stack.pop()
        color[n] = 2

    for n in sorted(edges):
        if color.get(n) is None:
            dfs(n)


def check_files(findings):
    for crate in CRATES:
        base = os.path.join(ROOT, crate)
        if not os.path.isdir(base):
            continue
        for dirpath, _, names in os.walk(base):
            if "/target" in dirpath or "/fuzz/" in dirpath + "/":
                continue
            for n in names:
                if not n.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, n)
                rel = os.path.relpath(path, ROOT)
                text = open(path, encoding="utf-8").read()
                first = next((l for l in text.splitlines() if l.strip()), "")
                if not first.startswith("//!"):
                    findings.append(f"{rel}: does not open with a //! module doc")
                parts = rel.split(os.sep)
                exempt = parts[0] == "testkit" or "tests" in parts or "benches" in parts
                lines = text.count("\n")
                if not exempt and lines > MAX_LINES:
                    findings.append(f"{rel}: {lines} lines (over {MAX_LINES})")


def packages_with_binaries(members):
    """The package names of the workspace `members` that build a binary."""
    names = set()
    for member in members:
        base = os.path.join(ROOT, member)
        with open(os.path.join(base, "Cargo.toml"), "rb") as f:
            manifest = tomllib.load(f)
        src = os.path.join(base, "src")
        declared = bool(manifest.get("bin"))
        found = os.path.exists(os.path.join(src, "main.rs")) or os.path.isdir(os.path.join(src, "bin"))
        if declared or found:
            names.add(manifest["package"]["name"])
    return names


def check_profiles(findings):
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        root = tomllib.load(f)
    with_bins = packages_with_binaries(root["workspace"]["members"])
    for pname, profile in root.get("profile", {}).items():
        if "strip" not in profile:
            continue
        for pkg, override in profile.get("package", {}).items():
            if pkg in with_bins and override.get("strip") != profile["strip"]:
                findings.append(
                    f"Cargo.toml: [profile.{pname}.package.{pkg}] must repeat "
                    f"strip = {str(profile['strip']).lower()} (cargo does not inherit it there)"
                )


def main():
    findings = []
    check_files(findings)
    check_profiles(findings)
    for crate in CRATES:
        check_crate(crate, findings)
    for f in findings:
        print(f)
    if findings:
        print(f"check-structure: {len(findings)} finding(s)", file=sys.stderr)
        return 1
    print("check-structure: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
