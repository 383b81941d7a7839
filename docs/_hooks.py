"""MkDocs hook: render the reStructuredText roles left in docstrings as plain code.

Docstrings name other objects the Sphinx way (:func:`genvi.fit`,
:class:`~genvi.training.History`); mkdocstrings renders the backticked part as code and
leaves the role name in front. This hook drops the role, and for ``~a.b.C`` keeps ``C``,
as Sphinx shows it.
"""

import re

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):<code>(~?)([^<]*)</code>")


def _replace(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html, page, config, files):
    return _ROLE.sub(_replace, html)
