"""The passwords a message offers for its archives: "Password: 1234",
"pwd 1234", "mot de passe : abc", "Пароль - 555"..."""

import html
import re

# Words that announce a password, in the languages spam is written in.
_WORDS = (r"passwords?|passw|passwd|pass|pwd|pw|passcode|pass\s*code|kennwort|"
          r"passwort|mot\s+de\s+passe|contrase[ñn]a|clave|senha|parola\s+d[i']\s*"
          r"(?:ordine|accesso)|password\s+d[i']\s*apertura|wachtwoord|has[łl]o|"
          r"heslo|jelsz[oó]|пароль|密码|密碼|パスワード|비밀번호|şifre|sifre|"
          r"archive\s+code|zip\s+code|pin|code|key")
_ANNOUNCED = re.compile(
    r"(?:" + _WORDS + r")\s*(?:is|ist|est|es|é|è|:|=|-|–|—|：|\s)\s*[:=\-–—]?\s*"
    r"[\"'«“‘„(\[]?\s*([^\s\"'»”’“(\)\[\]<>]{1,64})", re.IGNORECASE)
# Tried after those the body gives: what malware samples are shared with.
DEFAULTS = ("infected", "malware", "virus")


def candidates(body, limit=20):
    """The passwords *body* (text or HTML) offers, most likely first, at
    most *limit*, followed by the customary defaults."""
    text = html.unescape(re.sub(r"<[^>]{0,2000}>", " ", body or ""))
    found = []
    for match in _ANNOUNCED.finditer(text[:200000]):
        word = match.group(1).rstrip(".,;:!?")
        for candidate in (word, match.group(1)):
            if candidate and candidate not in found:
                found.append(candidate)
    found = found[:limit]
    return found + [d for d in DEFAULTS if d not in found]
