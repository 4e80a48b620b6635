"""The report's HTML pages from Jinja2 templates (anneuron/report/templates/*.html.j2), autoescaped."""

from __future__ import annotations

import functools
import html

from jinja2 import Environment, PackageLoader
from markupsafe import Markup


def _escape(value: object) -> object:
    """Every `{{ value }}` escaped with html.escape (&#x27;, &quot;), as the pages were before their templates:
    markupsafe's own entities (&#39;, &#34;) read the same but would change the pages' bytes. Markup passes as is."""
    return value if hasattr(value, "__html__") else Markup(html.escape(str(value)))


@functools.cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("anneuron.report", "templates"), autoescape=True, finalize=_escape,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render(template: str, **context: object) -> str:
    """The page `template` (a file name in templates/) filled with `context`."""
    return _environment().get_template(template).render(**context)
