#!/usr/bin/env python3
"""Why: the layers of DESIGN.md hold only while someone checks them. This reads every #include of ours
and fails, naming file, line and rule, when one points up: engine/core <- data, comm, engine/ops (the op
interface) <- engine/model, engine/cpu, cuda (the model and the backends, which see only the interface
of each other) <- engine/run <- sweep <- app. It also keeps each outside library in its one room: MPI in
comm/ (and the MPI test programs), BLAS in engine/cpu, CUDA, cuBLAS, NCCL and cuDNN in cuda/. Run by
ctest (test "layers") and by hand:
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
    "sweep": ["engine/core", "engine/run"],
    "app": ["engine/core", "comm", "data", "engine/ops", "engine/model", "engine/cpu", "cuda", "engine/run",
            "sweep"],
}
# An outside library's headers -> the only folders that may include them (tests too are checked).
LIBRARIES = [
    ("MPI", re.compile(r"mpi\.h$"), ["comm", "tests/mpi", "tests/gpu/jobs"]),
    ("BLAS", re.compile(r"(cblas|openblas[\w]*)\.h$"), ["engine/cpu"]),
    ("CUDA", re.compile(r"(cuda[\w]*|cublas[\w]*|nccl|cudnn[\w]*|curand[\w]*|cusparse[\w]*)\.h$"), ["cuda"]),
]
OURS = sorted(ALLOWED, key=len, reverse=True)
SOURCES = (".h", ".cpp", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SYSTEM_INCLUDE = re.compile(r'^\s*#\s*include\s+<([^>]+)>')


def folder_of(rel):
    for f in OURS:
        if rel == f or rel.startswith(f + "/"):
            return f
    return None


def inside(rel, folders):
    return any(rel.startswith(f + "/") for f in folders)


errors = []
for path in sorted((root / "engine").iterdir()):
    if path.is_file() and path.suffix in SOURCES:
        errors.append(f"{path.relative_to(root)}: a source file directly in engine/ (use core, ops, model, cpu or run)")
checked = 0
for top in ("engine", "data", "comm", "cuda", "sweep", "app", "tests"):
    for path in sorted((root / top).rglob("*")):
        if not path.is_file() or path.suffix not in SOURCES:
            continue
        rel = path.relative_to(root).as_posix()
        me = folder_of(rel)
        checked += 1
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = SYSTEM_INCLUDE.match(line)
            if m:
                for lib, header, rooms in LIBRARIES:
                    if header.search(m.group(1)) and not inside(rel, rooms):
                        errors.append(f"{rel}:{n}: includes <{m.group(1)}>, but {lib} headers belong to "
                                      f"{', '.join(r + '/' for r in rooms)} only")
            m = INCLUDE.match(line)
            if not m or me is None:
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
