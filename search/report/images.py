"""Static images (PNG/SVG/PDF) of a plotly figure, through kaleido and a Chromium already on this machine.

Nothing is downloaded: without kaleido >= 1 or a browser, the caller gets a one-line SearchError that names
which of the two is missing, how to install it, or to write .html/.csv/.json instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import plotly.graph_objects as go

from search.errors import SearchError

IMAGE_SCALE = 2  # device pixels per layout pixel


# Where a Chromium/Chrome is looked for without kaleido (choreographer, its driver, looks at the same places).
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
BROWSER_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/snap/bin/chromium",
                 "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
                 "/Applications/Chromium.app/Contents/MacOS/Chromium")
INSTALL_KALEIDO = "pip install -e '.[image]' (or pip install 'kaleido>=1')"
INSTALL_BROWSER = "apt-get install chromium (Debian), or set BROWSER_PATH=/path/to/chrome"
INSTEAD = "or write .html/.csv/.json, which need no browser"


def kaleido_problem() -> str | None:
    """Why kaleido cannot export (None: kaleido >= 1 is installed)."""
    try:
        import kaleido
    except ImportError:
        return "kaleido is not installed"
    if not hasattr(kaleido, "calc_fig_sync"):
        return "kaleido 0.x is installed, not kaleido>=1"
    return None


def _executable(path: str | Path | None) -> str | None:
    return str(path) if path and Path(path).is_file() and os.access(path, os.X_OK) else None


def find_browser() -> str | None:
    """A Chromium/Chrome on this machine, found whether or not kaleido is installed; never downloaded.

    With kaleido, choreographer's own search (a browser it downloaded itself with `kaleido_get_chrome`,
    BROWSER_PATH, chrome/chromium/... on PATH, the usual install paths); without, the same places here."""
    if kaleido_problem() is None:
        try:
            from choreographer.browsers.chromium import Chromium

            return _executable(Chromium.find_browser(skip_local=False))
        except Exception:  # a best-effort search in a third-party package
            return None
    candidates = [os.environ.get("BROWSER_PATH"), *map(shutil.which, BROWSER_NAMES), *BROWSER_PATHS]
    return next((found for found in map(_executable, candidates) if found), None)


def browser_path() -> str | None:
    """The Chromium/Chrome that kaleido would use (None: no kaleido >= 1, or no browser)."""
    return find_browser() if kaleido_problem() is None else None


def chromium_available() -> bool:
    """Whether PNG/SVG/PDF export can run: kaleido >= 1 and a Chromium/Chrome on this machine."""
    return browser_path() is not None


def no_browser_problem() -> str:
    """What exactly is missing for a static image (kaleido, the browser, or both), how to install each, and
    what is allowed instead (for a SearchError)."""
    kaleido = kaleido_problem()
    where = os.environ.get("BROWSER_PATH")
    browser = browser_path() if kaleido is None else find_browser()
    no_browser = (f"BROWSER_PATH={where} is not an executable" if where and not _executable(where)
                  else "no Chromium/Chrome found")
    if kaleido is not None and browser is not None:
        missing = f"{kaleido} (Chromium found at {browser}); allowed: {INSTALL_KALEIDO}"
    elif kaleido is not None:
        missing = f"{kaleido} and {no_browser}; allowed: {INSTALL_KALEIDO} and {INSTALL_BROWSER}"
    else:
        missing = f"kaleido is installed but {no_browser}; allowed: {INSTALL_BROWSER}"
    return f"PNG/SVG/PDF export needs kaleido>=1 and a Chromium/Chrome: {missing}, {INSTEAD}"


def write_image(fig: go.Figure, out: str | Path, width: int, height: int, scale: float = IMAGE_SCALE) -> Path:
    """Writes the figure as the image format `out`'s suffix names (.png, .svg or .pdf)."""
    out = Path(out)
    browser = browser_path()
    if browser is None:
        raise SearchError("out", str(out), no_browser_problem())
    import kaleido

    try:
        data = kaleido.calc_fig_sync(
            fig.to_dict(), opts=dict(format=out.suffix.lower().lstrip("."), width=width, height=height, scale=scale),
            # MathJax would come from a CDN; plotly.js comes from the plotly package, so this runs offline.
            kopts=dict(path=browser, mathjax=False, timeout=120))
    except Exception as exc:  # kaleido/choreographer raise many kinds when the browser cannot start
        first = (str(exc).splitlines() or [""])[0][:200]
        raise SearchError("out", str(out), f"Chromium at {browser} could not render the figure "
                          f"({exc.__class__.__name__}: {first}); allowed: .html/.csv/.json, which need no browser"
                          ) from None
    out.write_bytes(data)
    return out
