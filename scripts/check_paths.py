#!/usr/bin/env python3
"""Why: a comment that names a file of ours is a pointer a reader follows; after a move it points nowhere
(engine/model.h, long gone, was still named by ten comments). This reads the comments of every source
file (// and /* */ in C++ and CUDA, # in shell, Python and CMake) and the README, and fails, naming file
and line, on a repository path that does not exist. A path component in capitals (DIR, NAME) is a
placeholder and is not checked. Run by ctest (test "paths") and by hand:
    scripts/check_paths.py [REPO_ROOT]
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)

TOPS = ("engine", "app", "comm", "cuda", "data", "sweep", "tests", "scripts", "manifests", "docs")
EXTS = ("h", "cpp", "cu", "cuh", "inc", "sh", "py", "sbatch", "json", "md", "txt", "png", "csv")
PATH = re.compile(r"(?<![\w/.-])((?:%s)/[\w/.-]*\.(?:%s))(?![\w/-])" % ("|".join(TOPS), "|".join(EXTS)))
C_LIKE = (".h", ".cpp", ".cu", ".cuh", ".inc", ".js")
HASH = (".sh", ".py", ".sbatch", ".txt")
SKIP_DIRS = {".git", "node_modules", "fixtures", "corpus"}


def comment_lines(path):
    """(line number, comment text) of each line that holds a comment."""
    text = path.read_text(errors="replace")
    if path.suffix == ".md":
        yield from enumerate(text.splitlines(), 1)
        return
    in_block = False
    for n, line in enumerate(text.splitlines(), 1):
        if path.suffix in C_LIKE:
            parts = []
            rest = line
            while rest:
                if in_block:
                    end = rest.find("*/")
                    parts.append(rest if end < 0 else rest[:end])
                    if end < 0:
                        break
                    in_block, rest = False, rest[end + 2:]
                    continue
                slash, block = rest.find("//"), rest.find("/*")
                if slash >= 0 and (block < 0 or slash < block):
                    parts.append(rest[slash + 2:])
                    break
                if block < 0:
                    break
                in_block, rest = True, rest[block + 2:]
            if parts:
                yield n, " ".join(parts)
        else:
            hash_at = line.find("#")
            if hash_at >= 0:
                yield n, line[hash_at + 1:]


def sources():
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(p in SKIP_DIRS or p.startswith("build") for p in rel.parts[:-1]):
            continue
        if rel.parts[0] not in TOPS and rel.as_posix() not in ("README.md", "CMakeLists.txt"):
            continue
        if path.suffix in C_LIKE + HASH + (".md",) or path.name == "CMakeLists.txt":
            yield path


errors = []
checked = 0
for path in sources():
    checked += 1
    for n, comment in comment_lines(path):
        for m in PATH.finditer(comment):
            named = m.group(1)
            if any(part.isupper() for part in re.split(r"[/.]", named)):
                continue
            if not (root / named).exists():
                errors.append(f"{path.relative_to(root).as_posix()}:{n}: names {named}, which does not exist")
for e in errors:
    print(e)
print(f"paths: {checked} files checked, {len(errors)} missing paths named")
sys.exit(1 if errors else 0)
