"""The email channel: one module per provider (smtp, ses, sendgrid) and the message they all send (mime.py)."""
