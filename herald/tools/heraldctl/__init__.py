"""heraldctl: the operator's command line for herald (apps, keys, templates, provider accounts, send, status, cancel,
statistics, export, dead letters)."""
