"""Sphinx configuration of prunenet's manual: Markdown pages (MyST), the command-line
reference generated from the parser (sphinx-argparse), the API from the docstrings (autodoc).
Build: ``sphinx-build -W -n -b html docs docs/_build/html``."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("."))  # _cli.py

project = "prunenet"
author = "the prunenet authors"
copyright = "the prunenet authors"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinxarg.ext"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_*.md"]
myst_heading_anchors = 4          # [text](page.md#a-heading) links are checked by the build
myst_enable_extensions = ["colon_fence"]
suppress_warnings = ["myst.xref_ambiguous", "myst.domains"]
html_theme = "alabaster"
html_theme_options = {"page_width": "1100px", "sidebar_width": "240px"}
html_title = "prunenet"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
smartquotes = False               # "--symbol" in a flag's help stays two hyphens, not a dash
highlight_language = "none"       # literal blocks (a command's --help examples) as printed
html_static_path = ["_static"]
html_css_files = ["custom.css"]
