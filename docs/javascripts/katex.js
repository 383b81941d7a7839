// Renders the formulas with KaTeX, served with the site from vendor/katex (no network).
//
// Markdown pages: pymdownx.arithmatex (generic mode) leaves \( ... \) and \[ ... \] inside
// elements of class "arithmatex". Notebook pages (mkdocs-jupyter): the Markdown cells keep
// Jupyter's $ ... $ and $$ ... $$. Only those elements are searched, so a dollar sign
// anywhere else on a page stays a dollar sign.
(function () {
  const bracketed = [
    { left: "\\[", right: "\\]", display: true },
    { left: "\\(", right: "\\)", display: false },
  ];
  const dollars = [{ left: "$$", right: "$$", display: true }, { left: "$", right: "$", display: false }];
  const options = { throwOnError: false };

  function render(root) {
    root.querySelectorAll(".arithmatex").forEach((el) => {
      renderMathInElement(el, { ...options, delimiters: bracketed });
    });
    root.querySelectorAll(".jupyter-wrapper .jp-MarkdownOutput").forEach((el) => {
      renderMathInElement(el, { ...options, delimiters: dollars.concat(bracketed) });
    });
  }

  // Material for MkDocs announces each page (also after instant navigation) on document$.
  if (typeof document$ !== "undefined") {
    document$.subscribe(({ body }) => render(body));
  } else {
    document.addEventListener("DOMContentLoaded", () => render(document.body));
  }
})();
