"""A self-contained HTML report: every picture is inlined, so the file can be mailed or archived alone."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from histobridge._atomic import atomic_open

if TYPE_CHECKING:
    from PIL import Image

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.lead{color:#555} figure{margin:1em 0} figcaption{color:#555;font-size:.9em}
img{max-width:100%;image-rendering:auto;border:1px solid #eee}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0} td,th{border:1px solid #ddd;padding:.25em .6em}
th{background:#f6f6f6;text-align:left} .num{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f4f4f4;padding:0 .25em} .grid{display:flex;flex-wrap:wrap;gap:1em}
.grid figure{flex:1 1 300px} .note{background:#fff8e1;border-left:4px solid #f0c000;padding:.5em 1em}
"""

ReportImage = Union[str, Path, bytes, "Image.Image"]  # a PNG path, PNG bytes, or a PIL image


def image_data_uri(image: ReportImage) -> str:
    """A ``data:`` URI for a PIL image, a PNG path, or PNG bytes."""
    if isinstance(image, (str, Path)):
        data = Path(image).read_bytes()
    elif isinstance(image, bytes):
        data = image
    else:
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


@dataclass
class Report:
    """Builds the report section by section; :meth:`write` saves it atomically."""

    title: str
    lead: str = ""
    parts: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, *, raw: bool = False) -> None:
        self.parts.append(f"<p>{text if raw else html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def figure(self, image: ReportImage, caption: str = "", *, width: int | None = None) -> None:
        style = f' style="width:{width}px"' if width else ""
        self.parts.append(
            f'<figure><img src="{image_data_uri(image)}" alt="{html.escape(caption)}"{style}>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def figures(self, items: Iterable[tuple[ReportImage, str]]) -> None:
        self.parts.append('<div class="grid">')
        for image, caption in items:
            self.figure(image, caption)
        self.parts.append("</div>")

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
        if not rows:
            self.paragraph("(no rows)")
            return
        columns = list(columns or rows[0].keys())
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = []
        for row in rows:
            cells = []
            for c in columns:
                v = row.get(c, "")
                if isinstance(v, float):
                    cells.append(f'<td class="num">{v:.3f}</td>')
                elif isinstance(v, int) and not isinstance(v, bool):
                    cells.append(f'<td class="num">{v}</td>')
                else:
                    cells.append(f"<td>{html.escape(str(v))}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        self.parts.append(f"<table><tr>{head}</tr>{''.join(body)}</table>")

    def code(self, text: str) -> None:
        self.parts.append(f"<pre><code>{html.escape(text)}</code></pre>")

    def render(self) -> str:
        lead = f'<p class="lead">{html.escape(self.lead)}</p>' if self.lead else ""
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{lead}{''.join(self.parts)}</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_open(path, "w") as fh:
            fh.write(self.render())
        return path
