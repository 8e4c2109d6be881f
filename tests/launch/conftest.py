"""Registers the launcher tests' tripwire fixture (stand-in cluster tools that must never run)."""

from tests.launch.common import tripwire  # noqa: F401
