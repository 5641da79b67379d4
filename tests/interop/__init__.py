"""Interop tests against real third-party servers (Better Auth)."""
