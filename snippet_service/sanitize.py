"""An allowlist for the highlighter's HTML: we store and render nothing else."""

from __future__ import annotations

import nh3

TAGS = {"div", "pre", "span", "code", "table", "tbody", "tr", "td", "th", "br"}
ATTRIBUTES = {tag: {"class", "id"} for tag in TAGS}


def clean_html(html: str) -> str:
    """Keep only the elements Pygments' HtmlFormatter emits, with class and id attributes."""
    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=set(),
        link_rel=None,
        strip_comments=True,
    )
