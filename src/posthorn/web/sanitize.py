"""HTML mail made safe to show in a browser (nh3, i.e. ammonia's allow-list sanitiser).

Owns what survives of a message's HTML. The reading pane must show mail without running it or
telling the sender it was read, so:

- Only an allow-list of presentational tags and attributes survives; ``<script>`` and
  ``<style>`` go with their content; forms, frames, objects, ``<link>``, ``<meta>``, ``<base>``
  and every event handler (``on*``) are dropped.
- Links: only ``http``, ``https`` and ``mailto`` (no ``javascript:``, ``data:``, ``vbscript:``);
  every ``<a>`` gets ``target="_blank" rel="noopener noreferrer"``.
- Inline ``style``: only allow-listed properties, and any declaration that could load a URL
  (``url(``, ``image-set``, ``@import``, CSS escapes that could spell them) is removed.
- Remote images (``http``, ``https``, protocol-relative) are blocked unless the reader allowed
  them: ``src`` becomes empty and the address moves to ``data-src``, so the page can offer
  "show images" (which asks the API again with ``images=1``). ``data:`` images stay;
  ``cid:`` images point at the message's own part (same origin).

The output is what nh3 serialises (html5ever): every attribute double-quoted with ``"`` escaped,
which is what lets `_IMG` find ``<img>`` tags reliably in a second pass.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import nh3

__all__ = ["SanitizedHTML", "sanitize_html"]

TAGS: Final = frozenset(
    {
        "a", "abbr", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption",
        "center", "cite", "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl",
        "dt", "em", "figcaption", "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
        "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "rp", "rt", "ruby", "s",
        "samp", "small", "span", "strike", "strong", "sub", "summary", "sup", "table", "tbody",
        "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var", "wbr",
    }
)  # fmt: skip
_COMMON: Final = {"style", "title", "dir", "lang", "align", "class"}
ATTRIBUTES: Final = {
    "*": _COMMON,
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height", "data-src"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing", "width", "bgcolor", "summary"},
    "td": {"colspan", "rowspan", "width", "height", "valign", "bgcolor", "nowrap"},
    "th": {"colspan", "rowspan", "width", "height", "valign", "bgcolor", "scope"},
    "tr": {"valign", "bgcolor"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type", "reversed"},
    "li": {"value"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "time": {"datetime"},
    "hr": {"width", "size", "noshade"},
    "div": set(),
}
STYLE_PROPERTIES: Final = frozenset(
    {
        "background-color", "border", "border-bottom", "border-collapse", "border-color",
        "border-left", "border-radius", "border-right", "border-spacing", "border-style",
        "border-top", "border-width", "clear", "color", "direction", "display", "float", "font",
        "font-family", "font-size", "font-style", "font-variant", "font-weight", "height",
        "letter-spacing", "line-height", "list-style-type", "margin", "margin-bottom",
        "margin-left", "margin-right", "margin-top", "max-height", "max-width", "min-height",
        "min-width", "padding", "padding-bottom", "padding-left", "padding-right", "padding-top",
        "table-layout", "text-align", "text-decoration", "text-indent", "text-transform",
        "vertical-align", "white-space", "width", "word-break", "word-spacing", "word-wrap",
    }
)  # fmt: skip
"""No ``background``, ``background-image``, ``list-style``, ``content``, ``cursor``,
``position``: they either load URLs or let mail draw over the page around it."""
URL_SCHEMES: Final = frozenset({"http", "https", "mailto", "cid", "data"})
_LINK_SCHEMES: Final = ("http:", "https:", "mailto:")
# Anything in a declaration that could make the browser fetch something. A backslash is a CSS
# escape, which could spell "url(" in a way a plain search would miss, so it goes too.
_CSS_FETCH: Final = re.compile(
    r"\\|url\s*\(|image-set|image\s*\(|cross-fade|element\s*\(|src\s*\(|@import|expression"
    r"|behavior|binding",
    re.IGNORECASE,
)
_IMG: Final = re.compile(r'<img\b(?:[^>"]|"[^"]*")*>')
_SRC: Final = re.compile(r'\ssrc="([^"]*)"')
_DATA_SRC: Final = re.compile(r'\sdata-src="[^"]*"')


@dataclass(frozen=True, slots=True)
class SanitizedHTML:
    html: str
    remote_images_blocked: bool  # True when at least one remote image was held back


def sanitize_html(
    text: str, *, allow_remote_images: bool, cid_url: Callable[[str], str | None] | None = None
) -> SanitizedHTML:
    """Sanitise ``text``; ``cid_url`` maps a Content-ID (without ``<>``) to a same-origin URL
    of that part, or None when the message has no such part."""
    cleaned = nh3.clean(
        text,
        tags=set(TAGS),
        clean_content_tags={"script", "style", "title", "template", "noscript", "textarea"},
        attributes={tag: set(attrs) for tag, attrs in ATTRIBUTES.items()},
        attribute_filter=_attribute_filter,
        strip_comments=True,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes=set(URL_SCHEMES),
        filter_style_properties=set(STYLE_PROPERTIES),
    )
    blocked = False

    def image(match: re.Match[str]) -> str:
        nonlocal blocked
        tag = _DATA_SRC.sub("", match.group(0))  # a sender's own data-src means nothing here
        src = _SRC.search(tag)
        if src is None:
            return tag
        url = html.unescape(src.group(1)).strip()
        low = url.lower()
        if low.startswith("data:image/"):
            return tag
        if low.startswith("cid:"):
            target = cid_url(url[4:].strip("<>")) if cid_url is not None else None
            new = f' src="{html.escape(target)}"' if target else ' src=""'
            return tag[: src.start()] + new + tag[src.end() :]
        if low.startswith(("http:", "https:", "//")):
            if allow_remote_images:
                return tag
            blocked = True
            return tag[: src.start()] + f' src="" data-src="{src.group(1)}"' + tag[src.end() :]
        return tag[: src.start()] + ' src=""' + tag[src.end() :]  # data: non-image, relative

    return SanitizedHTML(_IMG.sub(image, cleaned), blocked)


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    """Per attribute, after nh3's own checks: links only to the web and mail, and no style
    declaration that fetches anything."""
    if attr == "href":
        low = value.strip().lower()
        return value if low.startswith(_LINK_SCHEMES) or low.startswith("#") else None
    if attr == "style":
        kept = [d for d in value.split(";") if d.strip() and not _CSS_FETCH.search(d)]
        return ";".join(kept) or None
    if attr == "data-src":
        return None  # only this module writes data-src (after nh3, in `image`)
    return value
