"""MkDocs hook: the CLI reference's `rxsweep ... --help` texts, written at build time from
rxsweep.cli's own parser, so the page cannot drift from the options.

A page that holds the marker below gets, in its place, one section a subcommand with its help
text. Importing rxsweep.cli imports argparse only (its handlers import the library), so no Ray and
no torch are loaded by a docs build.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

MARKER = "<!-- rxsweep-cli-help -->"
#: Help texts are wrapped at this width whatever the terminal that builds the site.
WIDTH = 100


def _help_sections() -> str:
    platform_dir = Path(__file__).resolve().parents[2] / "platform"
    if str(platform_dir) not in sys.path:
        sys.path.insert(0, str(platform_dir))  # an uninstalled checkout builds its docs too
    from rxsweep.cli import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH + 2)  # argparse wraps at COLUMNS - 2
    try:
        parser = build_parser()
        sections = ["## `rxsweep --help`\n\n```text\n" + parser.format_help() + "```\n"]
        subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, sub in subcommands.choices.items():
            sections.append(f"## `rxsweep {name} --help`\n\n```text\n" + sub.format_help() + "```\n")
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(sections)


def on_page_markdown(markdown: str, **kwargs) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, _help_sections())
