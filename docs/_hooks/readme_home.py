"""MkDocs hook: README.md is the site's home page, so the first ten minutes are written once, for GitHub and the site.

README.md stays at the repository's root, where GitHub and `pip show` readers find it, and links to the pages as
`docs/PAGE.md`; on the site those pages are `PAGE.md`, so its links lose their `docs/` prefix. `mkdocs build
--strict` then checks README's links and anchors like any page's.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files


def on_files(files: Files, config: MkDocsConfig) -> Files:
    readme = Path(config.config_file_path).parent / "README.md"
    text = re.sub(r"\]\(docs/", "](", readme.read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=text))
    return files
