"""The page and its figures: a tiny HTML builder and matplotlib figures inlined as SVG.

Figures use a bare Agg `Figure`, never pyplot, so no GUI backend or global state is touched (a
server thread can write a report). The SVG keeps text as text and loses its prologue, DOCTYPE and
namespaces, which inline SVG needs none of: the page holds no http(s) URL and opens offline."""

from __future__ import annotations

import datetime as dt
import html
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any

from synctwin import __version__
from synctwin.kernel.formatting import duration as human
from synctwin.kernel.formatting import short_money

GREEN, RED, BLUE, ORANGE, GREY, PURPLE = "#2e7d32", "#c62828", "#1565c0", "#ef6c00", "#757575", "#6a1b9a"
FAULT_COLOUR = "#ffb74d"

CSS = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #212121; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em;
  border-bottom: 1px solid #e0e0e0; padding-bottom: 0.2em; } h3 { font-size: 1.05em; margin-top: 1.4em; }
.sub { color: #616161; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #e0e0e0; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { width: 16em; }
.ok { color: #2e7d32; font-weight: bold; } .bad { color: #c62828; font-weight: bold; }
.warn { color: #ef6c00; font-weight: bold; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
figcaption { color: #616161; font-size: 0.9em; }
details summary { cursor: pointer; color: #1565c0; }
footer { margin-top: 3em; color: #9e9e9e; font-size: 0.85em; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def money(x: float | None, decimals: int = 0) -> str:
    if x is None:
        return "-"
    sign = "-" if x < 0 else ""
    return f"{sign}${abs(x):,.{decimals}f}"


def short_count(x: float, _pos: Any = None) -> str:
    a = abs(x)
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.0f}"


def duration(seconds: float | None) -> str:
    """'9h 1m': the terminal's helper, so a page and the command say the same."""
    return human(seconds)


class Cell:
    """A table cell with a CSS class (numbers right-aligned, verdicts coloured)."""

    __slots__ = ("cls", "text")

    def __init__(self, text: Any, cls: str = "") -> None:
        self.text, self.cls = text, cls


def num(text: Any) -> Cell:
    return Cell(text, "num")


def verdict(passed: bool, yes: str = "PASS", no: str = "FAIL") -> Cell:
    return Cell(yes if passed else no, "ok" if passed else "bad")


class Page:
    """An HTML page assembled from headings, paragraphs, tables and inline SVG figures."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.parts: list[str] = [f"<h1>{esc(title)}</h1>"]
        if subtitle:
            self.parts.append(f'<p class="sub">{esc(subtitle)}</p>')
        self._figures = 0

    def h2(self, text: str, anchor: str | None = None) -> None:
        ident = f' id="{esc(anchor)}"' if anchor else ""
        self.parts.append(f"<h2{ident}>{esc(text)}</h2>")

    def h3(self, text: str) -> None:
        self.parts.append(f"<h3>{esc(text)}</h3>")

    def p(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{esc(text)}</p>")

    def raw(self, markup: str) -> None:
        """Markup built by this module's helpers (already escaped)."""
        self.parts.append(markup)

    def kv(self, rows: Iterable[tuple[str, Any]]) -> None:
        """A two-column table of key numbers: what a reader needs without the plots."""
        body = "".join(f"<tr><th>{esc(k)}</th>{_td(v)}</tr>" for k, v in rows)
        self.parts.append(f'<table class="kv">{body}</table>')

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, collapsed: str | None = None) -> None:
        head = "".join(f"<th>{esc(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
        markup = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        if collapsed:
            markup = f"<details><summary>{esc(collapsed)}</summary>{markup}</details>"
        self.parts.append(markup)

    def figure(self, fig: Any, caption: str, alt: str) -> None:
        """Inline a matplotlib figure as SVG, with a caption and an accessible label."""
        self._figures += 1
        svg = figure_svg(fig, salt=f"{self.title}-{self._figures}")
        svg = svg.replace("<svg ", f'<svg role="img" aria-label="{esc(alt)}" ', 1)
        self.parts.append(f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>")

    def render(self) -> str:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(self.title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(self.parts)
            + f"\n<footer>SyncTwin {esc(__version__)} - written {stamp} - self-contained: "
            "no scripts, no network</footer>\n</body></html>\n"
        )


def _td(v: Any) -> str:
    if isinstance(v, Cell):
        c = f' class="{v.cls}"' if v.cls else ""
        return f"<td{c}>{esc(v.text)}</td>"
    return f"<td>{esc('-' if v is None else v)}</td>"


def new_figure(width: float, height: float, *, rows: int = 1, cols: int = 1, sharex: bool = False) -> tuple[Any, Any]:
    """A pyplot-free figure with the Agg canvas and its axes.

    Margins are fixed in inches rather than solved by a layout engine: constrained layout
    drew every figure twice and was 40% of a report's time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    left, right, bottom, top = 0.85, 0.2, 0.55, 0.4  # inches: y tick labels, x label, title
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=0.28,
        hspace=0.45,
    )
    axes = fig.subplots(rows, cols, squeeze=False, sharex=sharex)
    return fig, axes


def frame(ax: Any, title: str, *, xlabel: str | None = None, fontsize: int = 11, fmt: Any = short_money) -> None:
    """What the money-over-time panels share: a title, an x label, money (or `fmt`) ticks, a light grid."""
    from matplotlib.ticker import FuncFormatter

    ax.set_title(title, fontsize=fontsize)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    ax.yaxis.set_major_formatter(FuncFormatter(fmt))
    ax.grid(alpha=0.3)


_PROLOGUE = re.compile(r"^.*?(?=<svg[\s>])", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


def figure_svg(fig: Any, *, salt: str) -> str:
    """The figure as an <svg> element for inline use; ids are salted so figures never clash."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = _PROLOGUE.sub("", buf.getvalue(), count=1)
    svg = _METADATA.sub("", svg)
    return _NAMESPACES.sub("", svg).strip()
