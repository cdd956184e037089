"""Generated from protos/herald/v1 by protos/generate.py; do not edit."""
