"""Test-only helpers that start private PostgreSQL servers and PgBouncer."""
