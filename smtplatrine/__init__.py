"""smtplatrine: an SMTP honeypot that looks like Postfix and relays nothing."""
