"""Self-contained HTML reports (`--report FILE.html` on gate, replay, chaos, tune, backtest --rolling).

One page per run, its plots inlined as SVG and its key numbers as text, so it can be mailed,
archived or read offline. matplotlib is imported only by the page builders, never here: a command
without --report does not pay for it."""

from __future__ import annotations

import os
from pathlib import Path

from synctwin.kernel.errors import InvalidInput


def check_report_path(path: str | None) -> None:
    """Fail before the work, not after it: the report's directory must exist and be writable (none given: no report)."""
    if not path:
        return
    p = Path(path)
    if path.endswith(os.sep):
        raise InvalidInput("expected a file name such as report.html", source=path, field="--report")
    if p.is_dir():
        raise InvalidInput("is a directory; give a file name such as report.html", source=path, field="--report")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInput(f"directory {str(parent)!r} does not exist", source=path, field="--report")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"directory {str(parent)!r} is not writable", source=path, field="--report")
    if p.exists() and not os.access(p, os.W_OK):
        raise InvalidInput("exists and is not writable", source=path, field="--report")


def write_report(path: str | os.PathLike[str], html: str) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a page."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"cannot write the report ({exc.strerror})", source=str(p), field="--report") from None
    return p
