"""Run by mkdocs-gen-files at build time: every page's reference markers filled from the code."""

from pathlib import Path

import mkdocs_gen_files

from portkey_user_proxy.operations.reference import fill

for source in sorted(Path(__file__).parent.glob("*.md")):
    with mkdocs_gen_files.open(source.name, "r") as page:
        text = page.read()
    filled = fill(text)
    if filled != text:
        with mkdocs_gen_files.open(source.name, "w") as page:
            page.write(filled)
