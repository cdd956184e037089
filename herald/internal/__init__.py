"""Generated from protos/herald/internal by protos/generate.py; do not edit."""
