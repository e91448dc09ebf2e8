"""Checks of exercise 02, built on the machinery of bnlib.checks (placeholder: being written)."""

__all__ = []

TASKS = {}
