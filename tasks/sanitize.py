"""An allowlist for the highlighter's HTML: we store and render nothing else."""

from __future__ import annotations

import nh3

# Every element Pygments' HtmlFormatter writes with class-based styles: div/pre/span
# always, code with wrapcode, table/tr/td/th with linenos="table". Its anchors (<a> with
# href/name, for lineanchors) and inline style/title attributes are left out on purpose.
TAGS = frozenset({"div", "pre", "span", "code", "table", "tr", "td", "th"})
# Only class: our highlighter writes no id (ids come only with the linespans and
# lineanchors options, which it does not use), and an id from the highlighter could
# stand in for one of the page's own elements.
# "*" must be given: without it nh3 keeps ammonia's attributes for every tag (lang, title).
ATTRIBUTES: dict[str, set[str]] = {"*": set(), **{tag: {"class"} for tag in TAGS}}
# Elements removed together with their content; any other element outside TAGS is
# removed but its text is kept (escaped).
DROPPED_WITH_CONTENT = frozenset({"script", "style"})


def clean_html(html: str) -> str:
    """Keep only the elements Pygments' HtmlFormatter emits, with their class attributes."""
    return nh3.clean(
        html,
        tags=set(TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes=ATTRIBUTES,
        url_schemes=set(),
        link_rel=None,
        strip_comments=True,
    )
