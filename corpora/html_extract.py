"""Main-text extraction from (Chinese) HTML pages.

``extract_main_text(html, url=None) -> (title, text)`` is the one entry point. The method, in order:

1. decode bytes: BOM, then ``<meta charset>`` / ``http-equiv`` / XML declaration, else UTF-8, else GB18030;
2. parse with lxml and clean: drop script/style/nav/header/footer/aside/forms without prose, hidden
   elements, blocks whose class/id names boilerplate (navbox, sidebar, menu, breadcrumb, share, reference
   lists, comment forms, ...), MediaWiki chrome (edit links, TOC, infobox, navbox, hatnotes) and data tables
   (tables whose cells are short and prose-free);
3. linearise the body into text blocks (one per block-level element run) carrying character statistics:
   non-link characters, link characters, CJK characters and prose punctuation (。，、！？；：);
4. detect forum / Q&A pages: a group of >= 3 repeated siblings with the same tag and class signature is a
   list of posts; in each post the "content slot" (the relative path that holds most text across posts) is
   kept even for one-line replies, while per-post chrome (user names, timestamps, buttons, signatures)
   sits at other paths and must stand on its own;
5. classify each block (good / near-good / short / bad) from its length, link density and punctuation,
   resolve near-good and short blocks from their neighbours (jusText-style), and demote short lines that
   repeat across the page (boilerplate-line statistics);
6. take the contiguous run of blocks with the highest content-minus-boilerplate sum as the main region,
   keep its good blocks and the headings that introduce kept text.

Pure function of its input; no network.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections import Counter, defaultdict

import lxml.etree as etree
import lxml.html

__all__ = ["extract_main_text", "decode_html"]

# --------------------------------------------------------------------------------------------- decoding

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""<\?xml[^>]{0,100}?encoding\s*=\s*["']([A-Za-z0-9_.:\-]+)""", re.I)
_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "gb_2312-80": "gb18030", "cp936": "gb18030",
    "euc-cn": "gb18030", "hz-gb-2312": "gb18030", "big5": "big5hkscs", "x-big5": "big5hkscs",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "us-ascii": "utf-8", "ascii": "utf-8", "utf8": "utf-8",
    "unicode": "utf-8",
}


def _declared_charset(head: bytes) -> str | None:
    m = _META_CHARSET.search(head) or _XML_ENCODING.search(head)
    if not m:
        return None
    name = m.group(1).decode("ascii", "ignore").strip().lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_html(data: bytes) -> str:
    """Bytes of a page -> text: BOM, declared charset (meta/http-equiv/XML), else UTF-8, else GB18030."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", "replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", "replace")
    declared = _declared_charset(data[:4096])
    tried = []
    for enc in (declared, "utf-8", "gb18030"):
        if enc and enc not in tried:
            tried.append(enc)
            try:
                return data.decode(enc)
            except (UnicodeDecodeError, LookupError):
                continue
    # Nothing decodes strictly: ask charset-normalizer, else the best guess with replacement characters.
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data[:200_000]).best()
        if best is not None and best.encoding:
            return data.decode(best.encoding, "replace")
    except Exception:  # pragma: no cover - optional dependency path
        pass
    return data.decode(declared or "utf-8", "replace")


# --------------------------------------------------------------------------------------------- cleaning

_DROP_TAGS = {
    "script", "style", "noscript", "template", "iframe", "frame", "frameset", "object", "embed", "applet",
    "svg", "math", "canvas", "video", "audio", "map", "button", "select", "option", "textarea", "input",
    "label", "link", "meta", "nav", "aside", "head", "title", "dialog", "menu",
}
_CHROME_TAGS = {"header", "footer", "form"}  # dropped unless they hold much of the page's prose

# Tokens (split on whitespace, '-' and '_') naming boilerplate. Matched against class and id.
_BOILER_TOKENS = {
    "nav", "navbar", "navbox", "navigation", "navi", "menu", "menus", "submenu", "sidebar", "side", "sidenav",
    "footer", "foot", "breadcrumb", "breadcrumbs", "crumb", "crumbs", "share", "sharing", "social", "sns",
    "toolbar", "tools", "login", "signin", "signup", "register", "copyright", "pagination", "pager",
    "subscribe", "newsletter", "cookie", "cookies", "popup", "modal", "advert", "advertisement", "ad", "ads",
    "adsense", "banner", "sponsor", "sponsored", "promo", "recommend", "recommended", "related", "hot",
    "hotnews", "rank", "ranking", "widget", "masthead", "topbar", "header", "signature", "sign", "sig",
    "sightml", "pstatus", "hidden", "hide", "noprint", "skip", "qrcode", "weixin", "wechat",
    "tags", "tagcloud", "catlinks", "toc", "infobox", "metadata", "ambox", "reflist", "references",
    "refbegin", "mbox", "hatnote", "sistersitebox", "authority", "editsection", "dablink", "rellink",
    "noteta", "portal", "backlink", "comment-form", "respond", "reply-form",
    "searchbox", "search", "dropdown", "tooltip", "mask", "overlay", "disclaimer", "statement",
}
_BOILER_PHRASES = re.compile(
    r"comment-?form|comment-respond|reply-?box|post-?actions|user-?info|author-?info|userinfo|authorinfo|"
    r"mw-editsection|mw-jump|mw-indicators|mw-references|mw-cite-backlink|mw-kartographer|printfooter|"
    r"vector-(?!body)|side-box|navbox|infobox|shortdescription|mw-empty-elt|coordinates|geo-multi|"
    r"nav-?links|site-?(?:nav|map|info|header|footer)|bottom-?(?:bar|nav|link)|top-?(?:bar|nav|link)|"
    r"friend-?links?|footnotes?-?list|back-?to-?top|go-?top",
    re.I,
)
_PROTECT = re.compile(r"(?:^|[\s_-])(?:article|content|main|post|entry|body|text|reply|answer|thread)(?:$|[\s_-])", re.I)
_TOKEN_SPLIT = re.compile(r"[\s_\-]+")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)

_BLOCK_TAGS = {
    "html", "body", "div", "p", "section", "article", "main", "blockquote", "pre", "ul", "ol", "li", "dl", "dt",
    "dd", "table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption", "h1", "h2", "h3", "h4", "h5", "h6",
    "figure", "figcaption", "address", "center", "fieldset", "hr", "details", "summary", "header", "footer",
    "form", "hgroup",
}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_PUNCT = re.compile(r"[。，、！？；：,.!?;:]")
_PUNCT_CJK = re.compile(r"[。，、！？；：]")
_WS = re.compile(r"[ \t\r\f\v\u00a0\u3000\u200b\ufeff]+")
_CJK_SPACE = re.compile(
    r"(?<=[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]) (?=[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef])"
)


def _attr_text(el) -> str:
    return f"{el.get('class') or ''} {el.get('id') or ''}".strip()


@functools.lru_cache(maxsize=4096)
def _is_boilerplate_name(names: str) -> bool:
    if not names:
        return False
    if _BOILER_PHRASES.search(names):
        return True
    tokens = {t.lower() for t in _TOKEN_SPLIT.split(names) if t}
    return bool(tokens & _BOILER_TOKENS)


def _prose(el) -> int:
    """A cheap prose measure of a subtree: CJK prose punctuation count."""
    return len(_PUNCT_CJK.findall(el.text_content() or ""))


def _is_data_table(table) -> bool:
    """A table of short, prose-free cells (Wikipedia's wikitable, score tables), unlike a layout table."""
    cells = table.xpath(".//td|.//th")
    if len(cells) < 4:
        return False
    if table.xpath(".//table"):
        return False  # layout tables nest
    texts = [c.text_content().strip() for c in cells]
    long_prose = sum(1 for t in texts if len(t) >= 60 and len(_PUNCT_CJK.findall(t)) >= 2)
    return long_prose == 0


def _drop_reason(el, total_prose: int) -> bool:
    tag = el.tag
    if not isinstance(tag, str):  # comments, processing instructions
        return True
    tag = tag.lower()
    if tag in _DROP_TAGS:
        return True
    if el.get("hidden") is not None:
        return True
    style = el.get("style")
    if style and _HIDDEN_STYLE.search(style):
        return True
    if tag in _CHROME_TAGS:
        return _prose(el) < 0.3 * total_prose
    names = _attr_text(el)
    if not names:
        return False
    if _is_boilerplate_name(names):
        # A name is a hint, not a verdict: never drop a subtree holding much of the page's prose.
        limit = 0.15 if _PROTECT.search(names) else 0.4
        if _prose(el) < limit * total_prose:
            return True
    if tag == "table" and "wikitable" in names:
        return True
    return False


def _clean(root, body) -> None:
    total_prose = max(1, _prose(body))
    to_drop = []
    stack = list(body)
    while stack:  # pre-order walk that does not descend into what it drops
        el = stack.pop()
        if _drop_reason(el, total_prose):
            to_drop.append(el)
        else:
            stack.extend(el)
    for el in to_drop:
        _drop(el)
    for table in list(body.iter("table")):
        if table.getparent() is not None and _is_data_table(table):
            _drop(table)


def _drop(el) -> None:
    parent = el.getparent()
    if parent is None:
        return
    tail = el.tail
    if tail and tail.strip():
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(el)


# --------------------------------------------------------------------------------------------- blocks


class _Block:
    __slots__ = ("parts", "link", "owner", "heading", "n", "nlink", "cjk", "punct", "cjk_punct", "text", "label", "own", "forced", "chrome")

    def __init__(self, owner, heading: bool):
        self.parts: list[str] = []
        self.link = 0
        self.owner = owner
        self.heading = heading
        self.label = "bad"
        self.forced = False
        self.chrome = False


def _linearise(body) -> list[_Block]:
    blocks: list[_Block] = []
    state = {"cur": None}

    def add(text: str | None, owner, in_link: bool, heading: bool) -> None:
        if not text:
            return
        cur = state["cur"]
        if cur is None:
            cur = state["cur"] = _Block(owner, heading)
        cur.parts.append(text)
        if in_link:
            cur.link += sum(1 for ch in text if not ch.isspace())

    def flush() -> None:
        cur = state["cur"]
        if cur is not None:
            blocks.append(cur)
            state["cur"] = None

    # Iterative walk (pages nest deeper than Python's recursion limit): a context stack of
    # (owner block element, inside a link, inside a heading, is a block element).
    stack: list[tuple] = [(body, False, False, True)]
    for event, el in etree.iterwalk(body, events=("start", "end")):
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if event == "start":
            owner, in_link, heading, _ = stack[-1]
            is_block = tag in _BLOCK_TAGS
            if is_block:
                flush()
                owner, heading = el, tag in _HEADINGS
            elif tag == "br":
                add("\x00", owner, in_link, heading)
            elif tag == "a":
                in_link = True
            stack.append((owner, in_link, heading, is_block))
            add(el.text, owner, in_link, heading)
        else:
            _, _, _, is_block = stack.pop()
            if is_block:
                flush()
            if el is not body and el.tail:
                owner, in_link, heading, _ = stack[-1]
                add(el.tail, owner, in_link, heading)
    flush()

    out = []
    for b in blocks:
        raw = "".join(b.parts)
        lines = []
        for line in raw.split("\x00"):
            line = _WS.sub(" ", line.replace("\n", " ")).strip()
            line = _CJK_SPACE.sub("", line)
            if line:
                lines.append(line)
        if not lines:
            continue
        b.text = "\n".join(lines)
        b.n = sum(len(l.replace(" ", "")) for l in lines)
        b.nlink = min(b.link, b.n)
        b.cjk = len(_CJK.findall(b.text))
        b.punct = len(_PUNCT.findall(b.text))
        b.cjk_punct = len(_PUNCT_CJK.findall(b.text))
        out.append(b)
    return out


# --------------------------------------------------------------------------------------------- forum


_DIGITS = re.compile(r"\d+")


def _sig(el) -> str:
    cls = " ".join(sorted(_DIGITS.sub("#", c) for c in (el.get("class") or "").split()))
    ident = _DIGITS.sub("#", el.get("id") or "")
    ident = ident if "#" in ident else ""  # only numbered ids (post_123) are a repeated signature
    return f"{el.tag}.{cls}#{ident}"


_COMMENTS = re.compile(r"comment|cmt|pinglun|review|评论|評論", re.I)
_POST_TAGS = {"div", "li", "article", "section", "table", "tr", "tbody", "dl", "dd"}


def _mark_posts(blocks: list[_Block], body) -> None:
    """Find repeated sibling blocks (posts/replies) and force each post's content slot to be kept."""
    # For every block, the chain of ancestors below body.
    chains = []
    for b in blocks:
        chain = []
        el = b.owner
        while el is not None and el is not body:
            chain.append(el)
            el = el.getparent()
        chains.append(chain)
    groups: dict[tuple, set] = defaultdict(set)
    for chain in chains:
        for el in chain:
            parent = el.getparent()
            if parent is not None and el.tag in _POST_TAGS:
                groups[(parent, _sig(el))].add(el)
    best = None
    best_score = 0.0
    for key, members in groups.items():
        if len(members) < 3:
            continue
        # Relative path of each block inside its post; every prefix of it is a candidate content slot.
        weight: Counter = Counter()  # non-link characters of sentence-punctuated blocks under the prefix
        text: Counter = Counter()
        punct: Counter = Counter()
        posts: dict[tuple, set] = defaultdict(set)
        for b, chain in zip(blocks, chains):
            for i, el in enumerate(chain):
                if el in members:
                    if b.nlink <= 0.5 * b.n:
                        rel = tuple(_sig(x) for x in reversed(chain[:i]))
                        prose = b.n - b.nlink if _SENTENCE_PUNCT.search(b.text) else 0
                        for k in range(1 if rel else 0, len(rel) + 1):
                            weight[rel[:k]] += prose
                            text[rel[:k]] += b.n - b.nlink
                            punct[rel[:k]] += b.punct
                            posts[rel[:k]].add(el)
                    break
        if not weight:
            continue
        # Reader comments under an article are not the page's main text: skip a comment-named group when
        # the prose outside it outweighs it.
        names = f"{_attr_text(key[0])} {key[1]}"
        if _COMMENTS.search(names):
            inside = max(text.values())
            outside = sum(b.n - b.nlink for b in blocks if b.cjk_punct >= 2 and b.n >= 30 and b.nlink <= 0.3 * b.n)
            if outside - inside > inside:
                continue
        # The slot: the deepest prefix that holds most of the posts' prose and appears in most posts.
        top = max(weight.values())
        need = max(3, 0.5 * len(members))
        candidates = [r for r, w in weight.items() if w >= 0.75 * top and top > 0 and len(posts[r]) >= need]
        if not candidates:
            continue
        rel = max(candidates, key=lambda r: (len(r), weight[r]))
        if text[rel] / len(posts[rel]) < 6 or punct[rel] < 2:
            continue
        text = weight[rel]
        score = text
        if score > best_score:
            best, best_score = (key, rel), score
    if best is None:
        return
    (parent, sig), rel = best
    for b, chain in zip(blocks, chains):
        for i, el in enumerate(chain):
            if el.getparent() is parent and _sig(el) == sig:
                mine = tuple(_sig(x) for x in reversed(chain[:i]))
                # The slot, what lies inside it (paragraphs of a long post) and text sitting directly in its
                # containers (a post body written as "text<p>more</p>") are the post's content.
                in_slot = mine[: len(rel)] == rel or (mine and rel[: len(mine)] == mine)
                if in_slot and b.nlink <= 0.5 * b.n:
                    b.forced = True
                else:
                    b.chrome = True  # per-post chrome: user name, time, buttons, signature
                break


# --------------------------------------------------------------------------------------------- classify


_META_LINE = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}:\d{2}|发表于|發表於|提问者|提問者|浏览\s*\d|瀏覽\s*\d|"
    r"阅读\s*[:：]?\s*\d|閱讀\s*[:：]?\s*\d|评论\s*[:：(（]?\s*\d|来源\s*[:：]|作者\s*[:：]|责任编辑|責任編輯|编辑\s*[:：]"
)


_SENTENCE_PUNCT = re.compile(r"[。，！？；]")
_LEGAL_LINE = re.compile(r"copyright|©|版权所有|版權所有|icp备|icp證|icp证|公网安备|举报电话|舉報電話|all rights reserved", re.I)


def _classify(blocks: list[_Block]) -> None:
    texts = Counter(b.text for b in blocks if b.n <= 40 and not b.heading)
    for b in blocks:
        nonlink = b.n - b.nlink
        ld = b.nlink / b.n if b.n else 1.0
        if b.forced:
            b.label = "good"
        elif b.chrome:
            # Outside a post's content slot only substantial prose survives (a long quoted passage).
            b.label = "good" if nonlink >= 60 and ld <= 0.2 and b.cjk_punct >= 3 else "bad"
        elif b.heading:
            b.label = "heading" if ld <= 0.6 and b.n <= 80 else "bad"
        elif texts[b.text] >= 2 and b.n <= 40:
            b.label = "bad"  # boilerplate-line statistics: a short line repeated on the page
        elif b.n <= 60 and len(_SENTENCE_PUNCT.findall(b.text)) <= 1 and _META_LINE.search(b.text):
            b.label = "bad"  # a byline / timestamp / counter line
        elif b.n <= 150 and _LEGAL_LINE.search(b.text):
            b.label = "bad"  # copyright / licence-number / report-hotline line
        elif ld > 0.5:
            # Link-heavy prose (Chinese encyclopedia paragraphs link every other noun) is still prose when it
            # sits in a paragraph and carries sentence punctuation; context decides.
            prose_tag = b.owner.tag in ("p", "li", "dd", "figcaption", "blockquote")
            b.label = "near" if prose_tag and ld <= 0.85 and b.cjk_punct >= 2 or (
                b.owner.tag == "figcaption" and ld <= 0.85) else "bad"
        elif nonlink >= 30 and ld <= 0.35 and (b.punct >= 2 or (b.punct >= 1 and nonlink >= 50) or nonlink >= 120):
            b.label = "good"
        elif nonlink >= 8 and ld <= 0.5 and (b.punct >= 1 or b.cjk >= 8):
            b.label = "near"
        elif b.owner.tag == "figcaption":
            b.label = "near"
        else:
            b.label = "short"
    for b in blocks:
        b.own = b.label
    # Context: near-good next to good becomes good; short between good blocks becomes good.
    labels = [b.label for b in blocks]
    n = len(blocks)

    def neighbour(i: int, step: int, skip: tuple) -> str:
        j = i + step
        while 0 <= j < n:
            if labels[j] not in skip:
                return labels[j]
            j += step
        return "bad"

    resolved = list(labels)
    for i, lab in enumerate(labels):
        if lab == "near":
            prev, nxt = neighbour(i, -1, ("near", "short", "heading")), neighbour(i, 1, ("near", "short", "heading"))
            resolved[i] = "good" if "good" in (prev, nxt) else "bad"
    labels = resolved
    resolved = list(labels)
    for i, lab in enumerate(labels):
        if lab == "short":
            prev, nxt = neighbour(i, -1, ("short",)), neighbour(i, 1, ("short",))
            resolved[i] = "good" if prev == "good" and nxt == "good" else "bad"
    for b, lab in zip(blocks, resolved):
        b.label = lab


def _region(blocks: list[_Block]) -> tuple[int, int]:
    """Maximum-sum contiguous run: good blocks add their non-link characters, bad ones subtract theirs."""
    best, best_i, best_j = 0.0, 0, -1
    cur, start = 0.0, 0
    for i, b in enumerate(blocks):
        if b.label == "good":
            v = b.n - b.nlink
        elif b.label == "heading" or b.chrome:
            v = 0.0  # per-post chrome is part of the thread, not a boundary of it
        else:
            v = -float(b.n)
        if cur <= 0:
            cur, start = 0.0, i
        cur += v
        if cur > best:
            best, best_i, best_j = cur, start, i
    return best_i, best_j


# --------------------------------------------------------------------------------------------- title


_EDIT_LINK = re.compile(r"\s*\[\s*(?:编辑|編輯|edit|编辑源代码)\s*\]\s*$", re.I)
_TITLE_SPLIT = re.compile(r"\s+[-–—|·]\s+|_|｜|\s*[|]\s*")


def _title(root) -> str | None:
    title_el = root.find(".//title")
    raw = (title_el.text_content() if title_el is not None else "") or ""
    raw = _WS.sub(" ", raw).strip()
    og = root.xpath("//meta[@property='og:title']/@content")
    for h1 in root.iter("h1"):
        t = _EDIT_LINK.sub("", _WS.sub(" ", h1.text_content())).strip()
        if t and len(t) <= 120 and (not raw or t in raw or (og and t in og[0])):
            return t
    if og and og[0].strip():
        return _WS.sub(" ", og[0]).strip()
    if not raw:
        return None
    parts = [p.strip() for p in _TITLE_SPLIT.split(raw) if p and p.strip()]
    return parts[0] if parts else raw


# --------------------------------------------------------------------------------------------- entry


_BACK_MATTER = re.compile(
    r"^\s*(?:参考(?:文献|资料|來源|来源|書目|书目)|參考(?:文獻|資料|來源)|外部(?:链接|連結|链结)|参见|參見|相关条目|相關條目|"
    r"注释|註釋|脚注|腳註|延伸阅读|延伸閱讀|扩展阅读|擴展閱讀|引用|资料来源|資料來源|"
    r"references|external links|see also|notes|further reading|bibliography)\s*$",
    re.I,
)


def _level(b: _Block) -> int:
    tag = b.owner.tag
    return int(tag[1]) if tag in _HEADINGS else 7


_PARSER = lxml.html.HTMLParser(huge_tree=True, remove_comments=True, remove_pis=True)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)


def extract_main_text(html: str | bytes, url: str | None = None) -> tuple[str | None, str]:
    """(title, main text) of a page; paragraphs separated by '\\n'. Empty text when the page has no body/main text.

    ``html`` may be bytes (charset from BOM, ``<meta charset>``/``http-equiv``, else UTF-8, else GB18030).
    ``url`` is accepted for callers that have it; the extraction does not depend on it.
    """
    text = decode_html(html) if isinstance(html, (bytes, bytearray)) else html
    text = _CONTROL.sub("", _XML_DECL.sub("", text or "", count=1))
    if not text.strip():
        return None, ""
    try:
        root = lxml.html.document_fromstring(text, parser=_PARSER)
    except (etree.ParserError, ValueError):
        return None, ""
    title = _title(root)
    body = root.find("body")
    if body is None:
        return title, ""
    _clean(root, body)
    blocks = _linearise(body)
    if not blocks:
        return title, ""
    _mark_posts(blocks, body)
    _classify(blocks)
    i, j = _region(blocks)
    region = blocks[i : j + 1] if j >= i else []
    # Headings just before the region that introduce it (e.g. the article's h1) are kept.
    k = i - 1
    while k >= 0 and i - k <= 2 and blocks[k].label == "heading":
        region.insert(0, blocks[k])
        k -= 1
    out: list[str] = []
    skip_level = 0  # inside a back-matter section (references, external links, see also) of this level
    for idx, b in enumerate(region):
        if b.label == "heading":
            level = _level(b)
            if skip_level and level > skip_level:
                continue
            skip_level = level if _BACK_MATTER.match(b.text) else 0
        if skip_level:
            continue
        if b.label == "good":
            out.append(b.text)
        elif b.label == "heading":
            # keep a heading only when kept text follows it before the next heading
            for nb in region[idx + 1 :]:
                if nb.label == "heading":
                    break
                if nb.label == "good":
                    if b.text != title or out:
                        out.append(b.text)
                    break
    if not out:
        # A page whose only text is one short paragraph: that paragraph is its main text.
        lone = [b for b in blocks if b.own == "near" and not b.chrome]
        if len(lone) == 1:
            out.append(lone[0].text)
    return title, "\n".join(out)
