"""Operator tools that talk to a running herald."""
