"""heraldctl: the operator's command line for herald (apps, keys, templates, send, status, cancel)."""
