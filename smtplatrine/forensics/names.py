"""What an attachment's name and declared type say against its content.

Pure functions of untrusted text (no file is read): the flags of one
attachment row.
"""

import re
import unicodedata

# Extensions by what opening the file does.  A name whose extension says
# one kind while the content is another is a type mismatch.
KINDS = {
    "executable": "exe scr com pif cpl dll sys ocx msi msp drv efi bin elf so apk jar"
                  " app dmg",
    "script": "js jse vbs vbe wsf wsh hta ps1 psm1 bat cmd sh py pl reg inf scf"
              " url iqy slk",
    "shortcut": "lnk",
    "archive": "zip 7z rar tar gz tgz bz2 tbz xz txz cab iso img vhd vhdx ace arj"
               " lzh z zipx uue gzip",
    "pdf": "pdf",
    "office": "doc docx docm dot dotx dotm xls xlsx xlsm xlsb xlt xltx xltm xla xlam"
              " ppt pptx pptm pps ppsx ppsm pot potx potm rtf odt ods odp one pub"
              " msg",
    "html": "htm html shtml xhtml mht mhtml svg",
    "image": "jpg jpeg png gif bmp tif tiff ico webp heic",
    "text": "txt csv log eml ics vcf xml json",
    "audio_video": "mp3 wav ogg mp4 avi mov wmv mkv",
}
EXTENSION_KIND = {ext: kind for kind, exts in KINDS.items() for ext in exts.split()}

# Content (a libmagic MIME type) by the same kinds; types not listed say
# nothing either way (text/plain, application/octet-stream).
_MIME_KIND = [
    (r"application/(x-dosexec|x-msdownload|vnd\.microsoft\.portable-executable"
     r"|x-executable|x-elf|x-sharedlib|x-pie-executable|x-mach-binary|x-msi"
     r"|java-archive|vnd\.android\.package-archive)", "executable"),
    (r"application/x-ms-shortcut", "shortcut"),
    (r"application/(zip|x-7z-compressed|x-rar|vnd\.rar|x-tar|gzip|x-gzip|x-bzip2"
     r"|x-xz|vnd\.ms-cab-compressed|x-iso9660-image|x-cpio|x-lzh-compressed|x-arj"
     r"|x-ace-compressed|vnd\.ms-tnef)", "archive"),
    (r"application/pdf", "pdf"),
    (r"application/(msword|vnd\.ms-|vnd\.openxmlformats|vnd\.oasis\.opendocument"
     r"|rtf|cdfv2|x-ole-storage)|text/rtf", "office"),
    (r"text/html|application/xhtml|image/svg", "html"),
    (r"image/", "image"),
    (r"audio/|video/", "audio_video"),
    (r"text/x-(shellscript|python|perl|msdos-batch)|application/x-(shellscript"
     r"|javascript)|text/javascript", "script"),
]
# What a double extension hides behind: the last extension of these kinds
# after another recognised one.
_DANGEROUS = {"executable", "script", "shortcut"}
# Characters that reorder or hide what a name shows: bidirectional
# overrides, embeddings and isolates; and blank look-alikes used to pad.
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_BLANKS = set("\u2800\u3164\u115f\u1160\uffa0\u00a0\u2000\u2001\u2002\u2003\u2004"
              "\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000\u200b")
# A run of blanks this long hides the end of a name in a mail client.
_PADDING = 3


def mime_kind(mime):
    """The kind of a libmagic MIME type, or None when it says nothing."""
    for pattern, kind in _MIME_KIND:
        if re.match(pattern, mime or ""):
            return kind
    return None


def extensions(name):
    """The extensions of *name*, lower case, last one last (at most 3):
    ``invoice.pdf.exe`` -> ["pdf", "exe"]."""
    cleaned = "".join(c for c in name if c not in _BIDI).strip()
    parts = cleaned.lower().split(".")[1:]
    return [p.strip() for p in parts][-3:]


def flags(filename, declared, detected):
    """The flags of an attachment named *filename* (may be None), declared
    as *declared* (a MIME type, may be empty), whose content libmagic
    calls *detected*."""
    found = set()
    name = filename or ""
    if any(c in _BIDI for c in name):
        found.add("rtl_override")
    if any(unicodedata.category(c) in ("Cc", "Cf") and c not in _BIDI for c in name):
        found.add("control_characters")
    run = longest = 0
    for c in name:
        run = run + 1 if (c == " " or c in _BLANKS) else 0
        longest = max(longest, run)
    if longest >= _PADDING and "." in name.rstrip():
        found.add("padded_name")
    exts = extensions(name)
    kinds = [EXTENSION_KIND.get(e) for e in exts]
    if len(kinds) >= 2 and kinds[-1] in _DANGEROUS and kinds[-2] not in (None,
                                                                         kinds[-1]):
        found.add("double_extension")
    content = mime_kind(detected)
    named = kinds[-1] if kinds else None
    if content and named and named != content and not _compatible(named, content):
        found.add("type_mismatch")
    said = mime_kind((declared or "").lower())
    for one, other in ((said, content), (named, said)):
        if one and other and one != other and not _compatible(one, other):
            found.add("type_mismatch")
    if content in _DANGEROUS and named not in _DANGEROUS:
        found.add("executable_content")
    return sorted(found)


def _compatible(named, content):
    """Kinds that are honestly one another: an OOXML or OpenDocument file
    is a zip, a .jar or .apk is one too, an HTML file may be plain XML."""
    return {named, content} in ({"office", "archive"}, {"executable", "archive"},
                                {"html", "text"})
