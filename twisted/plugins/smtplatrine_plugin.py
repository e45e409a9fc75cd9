"""twistd plugins: ``twistd smtplatrine`` runs the SMTP honeypot (and its
dashboard), ``twistd smtplatrine-web`` the dashboard alone."""

from twisted.application.service import ServiceMaker

smtplatrine = ServiceMaker(
    "smtplatrine",
    "smtplatrine.tap",
    "SMTP honeypot that imitates Postfix and captures everything it is sent",
    "smtplatrine",
)

smtplatrine_web = ServiceMaker(
    "smtplatrine-web",
    "smtplatrine.web.tap",
    "the smtplatrine dashboard alone, over the database of the configuration",
    "smtplatrine-web",
)
