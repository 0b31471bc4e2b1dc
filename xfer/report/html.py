"""``report.html``: report.md rendered to one self-contained HTML file.

Why a second rendering: MLflow's artifact viewer shows a ``.md`` file as plain text (its figure
links stay literal ``![frontier](frontier.png)``), while it renders an ``.html`` artifact in a
sandboxed iframe loaded from a blob URL. That iframe can reach no other artifact, so every
figure is embedded as a ``data:image/png;base64,...`` URI and the tables are real ``<table>``s;
there is no script and no external file. Cost: base64 makes the PNGs a third larger, so the file
is about 4/3 of the figures' bytes (measured: 0.8 MB for a report with all six figures).

Raw HTML in the markdown is not passed through but shown as text: report.md quotes strings a
run logged (a failed trial's error, a weights origin), and ``<lambda>`` in an error must stay
text, not become markup.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
import xml.etree.ElementTree as etree
from pathlib import Path

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

FILE_NAME = "report.html"

# Inline, because the sandboxed viewer loads nothing else; readable tables, figures scaled to
# the frame's width.
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 1.45;
       margin: 1.5em auto; max-width: 70em; padding: 0 1em; color: #1a1a1a; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; }
code { background: #f5f5f5; padding: 0 0.2em; font-size: 0.92em; }
"""


def write_html(report_md: str | Path) -> Path:
    """Render ``report_md`` (a report.md, its figures in the same folder) to ``report.html``
    next to it and return that path."""
    source = Path(report_md)
    path = source.with_name(FILE_NAME)
    path.write_text(render(source.read_text(), source.parent), encoding="utf-8")
    return path


def render(text: str, folder: str | Path) -> str:
    """The HTML page of the markdown ``text``; images it links are read from ``folder`` and
    embedded. A linked figure that is not there is replaced by its alt text and the file name,
    so the page never shows a broken image."""
    converter = markdown.Markdown(extensions=["tables", "sane_lists", _EmbedImages(Path(folder))],
                                  output_format="html")
    # raw HTML in the text is escaped, not passed through (see the module docstring)
    converter.preprocessors.deregister("html_block")
    converter.inlinePatterns.deregister("html")
    body = converter.convert(_lists_start_after_paragraphs(text))
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), "Sweep report")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")


def _lists_start_after_paragraphs(text: str) -> str:
    """A blank line before a list that follows a paragraph or a figure line directly: CommonMark
    (and GitHub, and report.md's readers) start a list there, Python-Markdown would glue the
    items onto the paragraph."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        previous = lines[i - 1] if i else ""
        if _LIST_ITEM.match(line) and previous.strip() and not _LIST_ITEM.match(previous) \
                and not previous.startswith((" ", "\t", "#")):
            out.append("")
        out.append(line)
    return "\n".join(out)


_LIST_ITEM = re.compile(r"^(?:[-*+]|\d+\.) ")


def data_uri(path: Path) -> str:
    """``data:<mime>;base64,<bytes>`` of a file (PNG for the report's figures)."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


class _EmbedImages(Extension):
    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def extendMarkdown(self, md):  # noqa: N802 - Python-Markdown's hook name
        # priority 0: after the inline patterns have turned ![alt](src) into <img>
        md.treeprocessors.register(_ImagesInline(md, self.folder), "xfer_embed_images", 0)


class _ImagesInline(Treeprocessor):
    """Every ``<img>`` whose src is a file of the report's folder gets that file as a data URI.
    A src outside the folder (an absolute path, ``..``) or a URL is not read: it is treated like
    a missing figure."""

    def __init__(self, md, folder: Path):
        super().__init__(md)
        self.folder = folder.resolve()

    def run(self, root: etree.Element) -> None:
        for image in root.iter("img"):
            found = self._local_file(image.get("src", ""))
            if found is not None:
                image.set("src", data_uri(found))
                continue
            alt = image.get("alt", "") or "figure"
            image.tag = "em"
            image.text = f"[{alt}: {image.get('src', '')} is missing]"
            image.attrib.clear()

    def _local_file(self, src: str) -> Path | None:
        if not src or ":" in src or src.startswith("/"):
            return None
        candidate = (self.folder / src).resolve()
        if not candidate.is_relative_to(self.folder) or not candidate.is_file():
            return None
        return candidate
