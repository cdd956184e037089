"""Generated from protos/herald/internal/v1 by protos/generate.py; do not edit."""
