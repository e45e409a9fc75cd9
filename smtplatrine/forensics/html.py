"""HTML attachments: forms and where they post, password fields, scripts
and what they hide, frames, meta refreshes and URLs (html.parser: nothing
is rendered, fetched or run)."""

import re
from html.parser import HTMLParser
from urllib.parse import urljoin

from smtplatrine.forensics import flags
from smtplatrine.forensics.text import host, urls

# Bytes of a file read as HTML, and items kept of each list.
MAX_HTML = 8 * 2**20
MAX_ITEMS = 50
_OBFUSCATION = re.compile(r"\b(eval|atob|unescape|escape|fromCharCode|document\.write"
                          r"|decodeURIComponent|Function)\s*\(")
_REFRESH = re.compile(r"url\s*=\s*['\"]?([^'\">\s]+)", re.I)
_LINKS = {"a": "href", "area": "href", "link": "href", "img": "src", "script": "src",
          "iframe": "src", "frame": "src", "embed": "src", "object": "data",
          "form": "action", "base": "href", "source": "src", "video": "src",
          "audio": "src", "input": "src", "button": "formaction"}


def is_html(data, mime):
    if mime in ("text/html", "application/xhtml+xml", "image/svg+xml"):
        return True
    head = data[:2048].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<form",
                            b"<script", b"<meta", b"<svg", b"<iframe"))


def analyse(path, data):
    text = data[:MAX_HTML].decode("utf-8", "replace")
    parser = _Parser()
    try:
        parser.feed(text)
        parser.close()
    except Exception:
        pass
    found = {"kind": "html", "title": parser.title[:255] or None, "forms": parser.forms,
             "scripts": parser.scripts, "script_sources": parser.script_sources,
             "iframes": parser.iframes, "refresh": parser.refresh,
             "base": parser.base, "obfuscation": sorted(parser.obfuscation),
             "data_uris": parser.data_uris, "urls": parser.urls[:MAX_ITEMS]}
    scripts_text = " ".join(parser.script_text)
    found["urls"] = list(dict.fromkeys(found["urls"] + urls(scripts_text)))[:MAX_ITEMS]
    found["flags"] = flags(
        form=parser.forms, password_form=any(f["password"] for f in parser.forms),
        external_form_action=any(host(f["action"]) for f in parser.forms),
        script=parser.scripts or parser.script_sources,
        obfuscated_script=parser.obfuscation, iframe=parser.iframes,
        meta_refresh=parser.refresh, data_uri=parser.data_uris, urls=found["urls"])
    return found


class _Parser(HTMLParser):

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms, self.urls, self.iframes = [], [], []
        self.scripts, self.script_sources, self.script_text = 0, [], []
        self.obfuscation, self.data_uris = set(), 0
        self.refresh = self.base = None
        self.title, self._in = "", None

    def handle_starttag(self, tag, attributes):
        values = {k: (v or "") for k, v in attributes}
        link = values.get(_LINKS.get(tag, ""), "").strip()
        if tag == "base" and link:
            self.base = link[:2048]
        if link.lower().startswith("data:"):
            self.data_uris += 1
        elif link and len(self.urls) < 4 * MAX_ITEMS:
            self.urls.append(urljoin(self.base or "", link)[:2048])
        if tag == "form" and len(self.forms) < MAX_ITEMS:
            self.forms.append({"action": urljoin(self.base or "", link)[:2048],
                               "method": values.get("method", "get").lower()[:16],
                               "inputs": [], "password": False})
        elif tag in ("input", "select", "textarea") and self.forms:
            form = self.forms[-1]
            kind = values.get("type", "text" if tag == "input" else tag).lower()[:32]
            if len(form["inputs"]) < MAX_ITEMS:
                form["inputs"].append({"type": kind, "name": values.get("name", "")[:128]})
            form["password"] = form["password"] or kind == "password"
        elif tag == "script":
            self._in = "script"
            if link:
                self.script_sources.append(link[:2048])
            else:
                self.scripts += 1
        elif tag in ("iframe", "frame") and len(self.iframes) < MAX_ITEMS:
            self.iframes.append(link[:2048])
        elif tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            match = _REFRESH.search(values.get("content", ""))
            self.refresh = match.group(1)[:2048] if match else ""
            if match:
                self.urls.append(match.group(1)[:2048])
        elif tag == "title":
            self._in = "title"

    def handle_endtag(self, tag):
        if tag in ("script", "title"):
            self._in = None

    def handle_data(self, data):
        if self._in == "script":
            if sum(map(len, self.script_text)) < MAX_HTML:
                self.script_text.append(data)
            self.obfuscation.update(m.group(1) for m in _OBFUSCATION.finditer(data))
        elif self._in == "title" and len(self.title) < 255:
            self.title += data.strip()
