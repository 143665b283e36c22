"""Plugins used by the tests that break the yoloslim hook contract, one way per entry point."""
