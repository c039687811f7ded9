"""Doing the work: the runner that turns planned generations into calls and results, and re-parsing."""
