"""Sphinx extension: the ``{bench-results}`` directive shows the latest benchmark results.

``{bench-results} PATH`` renders the Markdown file PATH (relative to the page) when it exists, and the
directive's own content otherwise, so the appendix page builds without warnings whether or not
``amage bench`` has run. The page is rebuilt when PATH changes.
"""
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


class BenchResults(SphinxDirective):
    required_arguments = 1
    has_content = True

    def run(self):
        path = Path(self.env.doc2path(self.env.docname)).parent / self.arguments[0]
        if path.is_file():
            self.env.note_dependency(str(path))
            lines = path.read_text(encoding="utf-8").splitlines()
        else:
            lines = list(self.content) or [f"No results yet ({self.arguments[0]} is absent)."]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=str(path)), self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("bench-results", BenchResults)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
