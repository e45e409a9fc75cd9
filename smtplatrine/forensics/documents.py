"""The ``document`` analysis: an Office file, a PDF, a Windows executable,
an HTML file or a shortcut, each by its own analyser; None for a file
that is none of these."""

from smtplatrine.forensics import archives, filetype, html, lnk, office, pdf, pe


def prepare():
    for module in (filetype, office, pdf, pe, lnk):
        module.prepare()


def analyse(path, params):
    """What the document at *path* does: a dict with ``kind``, ``flags``,
    ``urls`` and what its kind has; PDF embedded files written to the
    attachment store ``params["store"]`` and listed in ``files``."""
    with open(path, "rb") as f:
        data = f.read()
    if archives.sniff(data[:0x9010]):
        # A container: what it holds is looked at on its own.
        return None
    mime = filetype.detect(data)[0]
    if pe.is_pe(data):
        return pe.analyse(path, data)
    if lnk.is_lnk(data):
        return lnk.analyse(path, data)
    if pdf.is_pdf(data):
        found, files = pdf.analyse(path, data, params["store"], params["max_file"])
        return dict(found, files=files)
    if office.is_office(data):
        return office.analyse(path, data)
    if html.is_html(data, mime):
        return html.analyse(path, data)
    return None
