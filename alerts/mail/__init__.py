"""Outgoing email: render templates, build MIME messages, talk SMTP, and the dev mail sink."""
