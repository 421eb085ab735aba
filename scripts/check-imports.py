#!/usr/bin/env python3
"""Checks that every module a Swift file imports is declared for its target in Package.swift.

  check-imports.py [PACKAGE_DIR]

SwiftPM builds a target that imports a module it does not declare as long as some other target built it
first (SystemPackage came in through swift-configuration, Crypto and Logging through Afterimage), so a
missing declaration only shows when the build order changes. This reads the manifest
(`swift package dump-package`) and every target's sources, and prints one line per undeclared import;
exits 1 if there is any. Modules of the toolchain (Foundation, Glibc, Testing, ...) need no declaration.
"""
import json
import pathlib
import re
import subprocess
import sys

TOOLCHAIN = {"Foundation", "FoundationEssentials", "Dispatch", "Synchronization", "Glibc", "Testing", "XCTest",
             "_Concurrency", "Swift", "PackageDescription"}
IMPORT = re.compile(r"^\s*(?:@[A-Za-z_]+(?:\([^)]*\))?\s+)*import\s+(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?([A-Za-z_][A-Za-z0-9_]*)", re.M)


def dependency_names(dependency):
    """The module names a manifest dependency entry provides (a target's or a product's name)."""
    for kind in ("byName", "target", "product"):
        if kind in dependency:
            return [dependency[kind][0]]
    return []


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    manifest = json.loads(subprocess.run(["swift", "package", "--package-path", str(root), "dump-package"],
                                         check=True, capture_output=True, text=True).stdout)
    targets = manifest["targets"]
    paths = {}
    for target in targets:
        default = "Tests" if target["type"] == "test" else "Sources"
        paths[target["name"]] = root / (target.get("path") or f"{default}/{target['name']}")
    problems = []
    for target in targets:
        declared = {target["name"]} | TOOLCHAIN
        for dependency in target.get("dependencies", []):
            declared.update(dependency_names(dependency))
        base = paths[target["name"]]
        excluded = [base / e for e in target.get("exclude", [])]
        # A nested target's folder belongs to it, not to the one around it.
        excluded += [p for name, p in paths.items() if name != target["name"] and base in p.parents]
        for source in sorted(base.rglob("*.swift")):
            if any(source == e or e in source.parents for e in excluded):
                continue
            for module in IMPORT.findall(source.read_text(encoding="utf-8")):
                if module not in declared:
                    problems.append(f"{source.relative_to(root)}: imports {module}, which target {target['name']} does not declare")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
