"""The HTML reports in a real browser: headless Chromium (Debian's `chromium` package) opens a
gate report and a replay report from disk, with networking switched off, and renders them.

Skipped when Chromium is not installed (`apt-get install -y chromium`; .ci/run installs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from shared_scenarios import SHOCK as SHARED_SHOCK

from harness.evaluation.synthetic import ResponseLaw, synthetic_history
from synctwin.app.cli import main

DATA = Path(__file__).parent / "data"
CHROMIUM = shutil.which("chromium") or shutil.which("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium)"
)

SHOCK = {k: v for k, v in SHARED_SHOCK.items() if k != "expectations"} | {"name": "browser_shock"}


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run: no sandbox (containers), no GPU, nothing from the network, a fresh profile."""
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        *args,
        page.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("reports")
    gate = out / "gate.html"
    assert main(
        [
            "gate",
            str(DATA / "strategy.json"),
            "--history",
            str(DATA / "history_90d.csv"),
            "--seed",
            "1",
            "--json",
            "--report",
            str(gate),
        ]
    ) in (0, 1)
    scenario = out / "shock.yaml"
    scenario.write_text(json.dumps(SHOCK), encoding="utf-8")
    replay = out / "replay.html"
    assert main(["replay", str(scenario), "--json", "--report", str(replay)]) == 0
    history = out / "account.csv"
    history.write_text(synthetic_history(ResponseLaw(), days=28 + 7 * 8, seed=11).to_csv(), encoding="utf-8")
    rolling = out / "rolling.html"
    assert (
        main(
            [
                "backtest",
                "--history",
                str(history),
                "--rolling",
                "--horizon",
                "7",
                "--lookback",
                "28",
                "--paths",
                "1000",
                "--json",
                "--report",
                str(rolling),
            ]
        )
        == 0
    )
    return {"gate": gate, "replay": replay, "rolling": rolling}


@pytest.mark.parametrize(
    ("name", "title", "figures"),
    [
        ("gate", "SyncTwin gate: APPROVED - example-spring", 2),  # the curve model approves the example (~0.87)
        ("replay", "SyncTwin replay: browser_shock (seed 0)", 1),
        ("rolling", "SyncTwin rolling backtest: curve on {out}/account.csv", 2),
    ],
)
def test_the_browser_builds_the_page(
    reports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, title: str, figures: int
) -> None:
    capsys.readouterr()
    run = chromium(tmp_path, reports[name], "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    assert f"<title>{title.format(out=reports[name].parent)}</title>" in dom
    assert dom.count("<svg") == figures, "the inline plots did not reach the DOM"
    assert dom.count("<figure>") == figures and "<table" in dom
    # the plots' text is real SVG text the browser laid out: axis labels and titles
    expected = {"gate": "net profit uplift", "replay": "cumulative spend", "rolling": "PIT of the realized uplift"}
    assert "<text" in dom and expected[name] in dom


@pytest.mark.parametrize("name", ["gate", "replay", "rolling"])
def test_the_browser_paints_the_plots(reports: dict[str, Path], tmp_path: Path, name: str) -> None:
    shot = tmp_path / f"{name}.png"
    run = chromium(tmp_path, reports[name], f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars")
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000, f"a {len(data)}-byte screenshot: the page looks empty"
    from PIL import Image  # pillow comes with matplotlib

    with Image.open(shot) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 24) or []
    # text and tables are black and grey; the plots add bars, bands, lines and fault shading in colour
    coloured = sum(n for n, (r, g, b) in colours if max(r, g, b) - min(r, g, b) > 40)
    assert coloured > 2_000, f"only {coloured} coloured pixels: the plots were not painted"


def _page_layout(shot: Path) -> tuple[int, int | None]:
    """(page height, top of the first plot) in pixels of a full-height screenshot: the page ends at
    its last non-white row; a plot starts at the first row with a band of colour (fills, shading),
    which text (black, grey, one green word) never has."""
    from PIL import Image

    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        w, h = rgb.size
        px = rgb.load()
        last, first_plot = 0, None
        for y in range(0, h, 4):
            row = [px[x, y] for x in range(0, w, 4)]
            if any(min(p) < 245 for p in row):
                last = y
            if first_plot is None and sum(max(p) - min(p) > 40 for p in row) > 40:
                first_plot = y
    return last, first_plot


def test_the_portfolio_replay_puts_its_plots_first_and_fits_a_screen_or_two(tmp_path: Path) -> None:
    """portfolio_10's page was 8,000 px tall with its first plot below 2,400 px: the campaigns that
    need a look come first, the rest share one figure of small panels."""
    page = tmp_path / "portfolio.html"
    assert main(["replay", "portfolio_10", "--json", "--report", str(page)]) == 0
    shot = tmp_path / "portfolio.png"
    run = chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1400,9000", "--hide-scrollbars")
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    height, first_plot = _page_layout(shot)
    assert first_plot is not None and first_plot < 900, f"the first plot starts at {first_plot} px"
    assert height < 4_500, f"the page is {height} px tall at 1400 px wide"
    dom = chromium(tmp_path, page, "--dump-dom").stdout
    assert dom.count("<figure>") == 2  # the paused campaign, then the small multiples of the nine others
