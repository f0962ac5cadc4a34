"""Backends: the backend-neutral runtime protocol and its implementations."""
