"""ANSI SGR colour codes to HTML spans: ansible's coloured output, rendered safely in a browser."""

from __future__ import annotations

import html
import re

_SGR_RE = re.compile(r"\x1b\[([0-9;]*)m")
_OTHER_ESC_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r")
_COLOURS = {30: "black", 31: "red", 32: "green", 33: "yellow", 34: "blue", 35: "magenta", 36: "cyan", 37: "white"}


def ansi_to_html(text: str) -> str:
    """Escape text and turn SGR codes into <span class="ansi-..."> (classes styled by cosmic.css)."""
    out: list[str] = []
    classes: list[str] = []
    open_span = False
    pos = 0
    for m in _SGR_RE.finditer(text):
        out.append(html.escape(_OTHER_ESC_RE.sub("", text[pos : m.start()])))
        pos = m.end()
        codes = [int(c) for c in m.group(1).split(";") if c.isdigit()] or [0]
        for code in codes:
            if code == 0:
                classes = []
            elif code == 1:
                classes.append("ansi-bold")
            elif code in _COLOURS:
                classes = [c for c in classes if not c.startswith("ansi-fg-")] + [f"ansi-fg-{_COLOURS[code]}"]
            elif 90 <= code <= 97:
                classes = [c for c in classes if not c.startswith("ansi-fg-")] + [
                    f"ansi-fg-bright-{_COLOURS[code - 60]}"
                ]
            elif code == 39:
                classes = [c for c in classes if not c.startswith("ansi-fg-")]
        if open_span:
            out.append("</span>")
            open_span = False
        if classes:
            out.append(f'<span class="{" ".join(dict.fromkeys(classes))}">')
            open_span = True
    out.append(html.escape(_OTHER_ESC_RE.sub("", text[pos:])))
    if open_span:
        out.append("</span>")
    return "".join(out)


def strip_ansi(text: str) -> str:
    return _OTHER_ESC_RE.sub("", _SGR_RE.sub("", text))
