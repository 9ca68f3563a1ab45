"""Static images (PNG/SVG/PDF) of a plotly figure, through kaleido and a Chromium already on this machine.

Nothing is downloaded: without kaleido >= 1 or a browser, the caller gets a one-line SearchError that says
what to install, or to write .html/.csv/.json instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import plotly.graph_objects as go

from search.errors import SearchError

IMAGE_SCALE = 2  # device pixels per layout pixel


def browser_path() -> str | None:
    """The Chromium/Chrome that kaleido would use; found, never downloaded.

    choreographer (kaleido's browser driver) looks, in order, at a browser it downloaded itself
    (`kaleido_get_chrome`), the BROWSER_PATH environment variable, chrome/chromium/... on PATH,
    and the usual install paths (/usr/bin/chromium, /usr/bin/google-chrome, ...).
    """
    try:
        import kaleido
        from choreographer.browsers.chromium import Chromium
    except ImportError:
        return None
    if not hasattr(kaleido, "calc_fig_sync"):  # kaleido 0.x
        return None
    try:
        path = Chromium.find_browser(skip_local=False)
    except Exception:  # a best-effort search in a third-party package
        return None
    if path and Path(path).is_file() and os.access(path, os.X_OK):
        return str(path)
    return None


def chromium_available() -> bool:
    """Whether PNG/SVG/PDF export can run: kaleido >= 1 and a Chromium/Chrome on this machine."""
    return browser_path() is not None


def no_browser_problem() -> str:
    """What is missing for a static image, and what is allowed instead (for a SearchError)."""
    try:
        import kaleido
    except ImportError:
        kaleido = None
    if kaleido is None or not hasattr(kaleido, "calc_fig_sync"):
        need = "kaleido>=1 (pip install -e '.[image]') and a Chromium"
    else:
        need = "a Chromium/Chrome for kaleido"
    where = os.environ.get("BROWSER_PATH")
    found = f"BROWSER_PATH={where} is not an executable" if where else "none found"
    return (f"PNG/SVG/PDF export needs {need}, {found}; allowed: apt-get install chromium (Debian) "
            "or set BROWSER_PATH=/path/to/chrome, or write .html/.csv/.json, which need no browser")


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
