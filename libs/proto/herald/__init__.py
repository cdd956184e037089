"""Generated from protos/herald by protos/generate.py; do not edit."""
