#!/usr/bin/env python3
"""Why: the layers of DESIGN.md hold only while someone checks them. This reads every #include "..." of
ours and fails, naming file, line and rule, when one points up: engine/core <- data, comm, engine/ops
(the op interface) <- engine/model, engine/cpu, cuda (the model and the backends, which see only the
interface of each other) <- engine/run <- app. Run by ctest (test "layers") and by hand:
    scripts/check_layers.py [REPO_ROOT]
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)

# folder -> folders (of ours) its files may include; a folder always includes itself.
ALLOWED = {
    "engine/core": [],
    "data": ["engine/core"],
    "comm": ["engine/core"],
    "engine/ops": ["engine/core"],
    "engine/model": ["engine/core", "comm", "engine/ops"],
    "engine/cpu": ["engine/core", "comm", "engine/ops"],
    "cuda": ["engine/core", "comm", "engine/ops"],
    "engine/run": ["engine/core", "comm", "data", "engine/ops", "engine/model", "engine/cpu", "cuda"],
    "app": ["engine/core", "comm", "data", "engine/ops", "engine/model", "engine/cpu", "cuda", "engine/run"],
}
OURS = sorted(ALLOWED, key=len, reverse=True)
SOURCES = (".h", ".cpp", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def folder_of(rel):
    for f in OURS:
        if rel == f or rel.startswith(f + "/"):
            return f
    return None


errors = []
for path in sorted((root / "engine").iterdir()):
    if path.is_file() and path.suffix in SOURCES:
        errors.append(f"{path.relative_to(root)}: a source file directly in engine/ (use core, ops, model, cpu or run)")
checked = 0
for top in ("engine", "data", "comm", "cuda", "app"):
    for path in sorted((root / top).rglob("*")):
        if not path.is_file() or path.suffix not in SOURCES:
            continue
        rel = path.relative_to(root).as_posix()
        me = folder_of(rel)
        if me is None:
            continue
        checked += 1
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = folder_of(m.group(1))
            if target is None or target == me:
                continue
            if target not in ALLOWED[me]:
                errors.append(f"{rel}:{n}: includes {m.group(1)}, but {me}/ may include only "
                              f"{', '.join(ALLOWED[me] + [me]) or 'itself'}")
for e in errors:
    print(e)
print(f"layers: {checked} files checked, {len(errors)} violations")
sys.exit(1 if errors else 0)
