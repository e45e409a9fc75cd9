"""The SMTP side: session protocol, its factory, envelope and AUTH parsing."""
