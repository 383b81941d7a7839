"""MkDocs hooks: clean-ups of the HTML that the plugins produce.

1. Docstrings name other objects the Sphinx way (:func:`genvi.fit`,
   :class:`~genvi.training.History`); mkdocstrings renders the backticked part as code and
   leaves the role name in front. The role is dropped, and for ``~a.b.C`` only ``C`` is
   kept, as Sphinx shows it.
2. Notebook pages (mkdocs-jupyter) carry nbconvert's MathJax loader, an empty
   ``<script src="">`` and its configuration; the site renders formulas with its own KaTeX
   copy (docs/javascripts/katex.js), so both are removed.
"""

import re

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):<code>(~?)([^<]*)</code>")
_MATHJAX = re.compile(
    r'<!-- Load mathjax -->\s*<script src="[^"]*">\s*</script>.*?<!-- End of mathjax configuration -->',
    flags=re.S,
)


def _replace(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html, page, config, files):
    html = _ROLE.sub(_replace, html)
    if page.file.src_uri.endswith(".ipynb"):
        html = _MATHJAX.sub("", html)
    return html
