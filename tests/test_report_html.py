"""report.html: report.md rendered for MLflow's artifact viewer, a sandboxed iframe that can load
nothing else. Every figure must be inside the file as a data URI, every table a <table>, and
nothing a run logged may turn into markup."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from test_report import AUDIT, FAILED, confusion, history, sweep_runs
from xfer import report
from xfer.report import html as report_html


class Page(HTMLParser):
    """The parts of a page these tests read: images, tables (as rows of cell texts), list
    items, script tags and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.images: list[dict] = []
        self.tables: list[list[list[str]]] = []
        self.items: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._item: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "li":
            self._item = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "li":
            self.items.append("".join(self._item).strip())
            self._item = None

    def handle_data(self, data):
        self.text.append(data)
        for part in (self._cell, self._item):
            if part is not None:
                part.append(data)


def png(path, colour) -> bytes:
    Image.new("RGB", (24, 16), colour).save(path)
    return path.read_bytes()


def decoded(src: str) -> bytes:
    assert src.startswith("data:image/png;base64,"), src[:40]
    return base64.b64decode(src.split(",", 1)[1], validate=True)


def test_each_figure_link_becomes_an_img_holding_that_file_as_a_data_uri(tmp_path):
    red, blue = png(tmp_path / "frontier.png", "red"), png(tmp_path / "size.png", "blue")
    text = "# t\n\n![frontier](frontier.png)\n\ntext\n\n![by size](size.png)\n"
    page = Page(report_html.render(text, tmp_path))
    assert [i["alt"] for i in page.images] == ["frontier", "by size"]
    assert [decoded(i["src"]) for i in page.images] == [red, blue]


def test_tables_become_html_tables_with_their_cells(tmp_path):
    text = ("## Runs\n\n| run | error |\n|---|---|\n| r1 | ValueError: a\\|b |\n"
            "| r2 | `<lambda>` failed |\n")
    page = Page(report_html.render(text, tmp_path))
    assert page.tables == [[["run", "error"], ["r1", "ValueError: a|b"], ["r2", "<lambda> failed"]]]


def test_markup_in_the_text_stays_text_and_the_page_has_no_script(tmp_path):
    text = "- error: <script>alert(1)</script> and <img src=x onerror=alert(2)>\n"
    rendered = report_html.render(text, tmp_path)
    page = Page(rendered)
    assert "script" not in page.tags and page.images == []
    assert page.items == ["error: <script>alert(1)</script> and <img src=x onerror=alert(2)>"]


def test_a_missing_or_outside_figure_is_named_not_linked(tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    png(tmp_path / "secret.png", "green")  # next to the report folder, not in it
    text = "![roc](roc_curves.png)\n\n![x](../secret.png)\n\n![y](/etc/hostname)\n\n![z](http://example.com/a.png)\n"
    page = Page(report_html.render(text, folder))
    assert page.images == []  # nothing the viewer would show as broken, nothing read from outside
    shown = "".join(page.text)
    for name in ("roc_curves.png is missing", "../secret.png is missing", "/etc/hostname is missing",
                 "http://example.com/a.png is missing"):
        assert name in shown


def test_a_list_right_after_a_figure_line_is_a_list(tmp_path):
    png(tmp_path / "confusion_matrices.png", "red")
    text = "## Confusion matrices\n\n![confusion matrices](confusion_matrices.png)\n- audit: a ~ b: same\n"
    page = Page(report_html.render(text, tmp_path))
    assert page.items == ["audit: a ~ b: same"] and len(page.images) == 1


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    runs = sweep_runs()
    detail = report.detail_run_ids(runs)
    out = tmp_path_factory.mktemp("report")
    return report.write_report(runs, FAILED, {r: history(6, 0.9) for r in detail},
                               {r: confusion(0.9) for r in detail}, out, target_accuracy=0.7,
                               audit=AUDIT, title="test sweep")


def test_write_report_writes_report_html_with_every_figure_and_table_of_report_md(written):
    markdown_text = written.read_text()
    html_path = written.with_name("report.html")
    assert html_path.is_file() and "report.html" in report.FILE_NAMES
    page = Page(html_path.read_text())
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", markdown_text)
    assert len(links) >= 4  # frontier, size, learning curves, confusion matrices
    assert [i["alt"] for i in page.images] == [alt for alt, _ in links]
    for image, (_, name) in zip(page.images, links):
        assert decoded(image["src"]) == (written.parent / name).read_bytes()
    assert len(page.tables) == markdown_text.count("\n|---") and len(page.tables) >= 5
    assert page.tables[-1] == [["run", "status", "error"],  # the runs left out, cell for cell
                               ["resnet18-pretrained-all-n800-bs32-ep6", "FAILED", "ValueError: a|b is not allowed"]]
    title = re.search(r"<title>(.*?)</title>", html_path.read_text()).group(1)
    assert title == "test sweep"
