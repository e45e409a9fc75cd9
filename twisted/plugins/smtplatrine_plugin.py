"""twistd plugin: ``twistd smtplatrine`` runs the SMTP honeypot."""

from twisted.application.service import ServiceMaker

smtplatrine = ServiceMaker(
    "smtplatrine",
    "smtplatrine.tap",
    "SMTP honeypot that imitates Postfix and captures everything it is sent",
    "smtplatrine",
)
