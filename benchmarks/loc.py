"""Lines of production code (*.py under agents synctwin world scenarios harness), as the project
counts them: all lines, and code lines without blank, comment-only and docstring lines.

    python benchmarks/loc.py            # this checkout's tracked files
    python benchmarks/loc.py --rev REV  # the same count at a commit (git show, no checkout)
"""

from __future__ import annotations

import argparse
import ast
import io
import subprocess
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agents", "synctwin", "world", "scenarios", "harness")
_LAYOUT = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
_LAYOUT |= {tokenize.ENCODING, tokenize.ENDMARKER}


def count(src: str) -> dict[str, int]:
    """total, blank, comment (comment-only lines), doc (docstring lines) and code lines of one file."""
    lines = src.splitlines()
    tokens = list(tokenize.generate_tokens(io.StringIO(src).readline))
    code = {r for t in tokens if t.type not in _LAYOUT for r in range(t.start[0], t.end[0] + 1)}
    comments = {t.start[0] for t in tokens if t.type == tokenize.COMMENT} - code
    doc: set[int] = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                doc.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    blank = sum(1 for line in lines if not line.strip())
    return {"total": len(lines), "blank": blank, "comment": len(comments), "doc": len(doc), "code": len(code - doc)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", help="count the files of this commit instead of the working tree")
    args = ap.parse_args()
    ls = ["git", "-C", str(ROOT), "ls-files"] if args.rev is None else ["git", "-C", str(ROOT), "ls-tree", "-r"]
    ls += ["--name-only", args.rev] if args.rev else []
    files = [
        f for f in subprocess.run([*ls, "--", *PACKAGES], capture_output=True, text=True, check=True).stdout.split()
    ]
    totals = dict.fromkeys(("total", "blank", "comment", "doc", "code"), 0)
    for f in (f for f in files if f.endswith(".py")):
        if args.rev is None:
            src = (ROOT / f).read_text()
        else:
            src = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{args.rev}:{f}"], capture_output=True, text=True
            ).stdout
        for k, v in count(src).items():
            totals[k] += v
    print(f"{args.rev or 'working tree'}: " + ", ".join(f"{k} {v:,}" for k, v in totals.items()))


if __name__ == "__main__":
    main()
