"""Links in rendered e-mail HTML: which ones would run code when followed, and which hosts a text links to.

Regular expressions rather than an HTML parser, because the output must stay byte for byte what was rendered
except for the attribute values replaced; quoted attribute values are read whole, so one holding '>' or a fake
attribute cannot hide the real one.
"""

import html
import re

# An HTML start tag, its quoted attribute values (which may hold '>') included.
_TAG = re.compile(r"""<[a-zA-Z](?:[^<>"']|"[^"]*"|'[^']*')*>""")
# One attribute of a tag (a name, and maybe a value), so a value is never read as an attribute of its own.
_ATTRIBUTE = re.compile(r"""([^\s"'>/=]+)(\s*=\s*)("[^"]*"|'[^']*'|[^\s"'>]+)?""")
# Attributes whose URL a browser follows when the reader clicks or submits.
_FOLLOWED = frozenset({"href", "xlink:href", "action", "formaction"})
# Schemes that run or embed something rather than go somewhere.
_DANGEROUS = ("javascript:", "vbscript:", "data:")
# An author's http(s) link in the template's own text: its scheme://host[:port].
_AUTHOR_LINK = re.compile(r"""\bhref\s*=\s*["']?(https?://[^/?#"'\s<>{]+)""", re.IGNORECASE)


def _neutralised_tag(tag: re.Match[str]) -> str:
    """A tag with every followed URL of a dangerous scheme replaced by "#", however it is spelt: entities
    (`jav&#x61;script:`) undone, and spaces and control characters, which browsers skip, ignored."""
    return tag[0][0] + _ATTRIBUTE.sub(_safe_attribute, tag[0][1:])


def _safe_attribute(attribute: re.Match[str]) -> str:
    name, equals, value = attribute[1], attribute[2], attribute[3]
    if value is None or name.lower() not in _FOLLOWED:
        return attribute[0]
    url = "".join(c for c in html.unescape(value.strip("\"'")) if c > " ").lower()
    return f'{name}{equals}"#"' if url.startswith(_DANGEROUS) else attribute[0]


def neutralised(text: str) -> str:
    """`text` with every link that would run code (javascript:, vbscript:, data:) replaced by "#"."""
    return _TAG.sub(_neutralised_tag, text)


def origins(text: str) -> set[str]:
    """The scheme://host[:port] of every http(s) href written in `text`, lower-cased."""
    return {m[1].lower() for m in _AUTHOR_LINK.finditer(text)}
