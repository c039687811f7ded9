"""The exception hierarchy. Every error a user can cause is a ``DaydreamError``.

Each subclass carries the object at fault in its message (file, key, gen_id, plugin), so the CLI can
print one line and exit; the traceback is only shown with ``DAYDREAM_DEBUG=1``.
"""

from __future__ import annotations


class DaydreamError(Exception):
    """Root of every error daydream reports to a user."""

    exit_code = 1


class UsageError(DaydreamError):
    """A command was called with arguments that cannot work together."""

    exit_code = 2


class LedgerPathError(DaydreamError):
    """The ledger path is not a usable SQLite file (a directory, unwritable, not SQLite)."""


class LedgerNotInitialised(DaydreamError):
    """The ledger file exists but has no schema, or an older one: run ``daydream init``."""


class LedgerMigrationError(DaydreamError):
    """The ledger's schema could not be upgraded; it was left as it was."""


class LedgerSchemaTooNew(DaydreamError):
    """The ledger was written by a newer daydream: its schema revision is one this one does not know."""


class LedgerForeignFile(DaydreamError):
    """The file is a SQLite database of another application; daydream leaves it untouched."""


class LedgerReadOnly(DaydreamError):
    """A command that writes was pointed at a ledger the process cannot write to."""


class ConcurrencyConflict(DaydreamError):
    """An append expected a stream version that another writer already took."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream!r} is at version {actual}, not {expected}: another writer got there first"
        )


class PlanTakenOver(DaydreamError):
    """A plan appended in several transactions was taken over (resumed) by another process."""


class LedgerIntegrityError(DaydreamError):
    """The hash chain or a stored text does not match what was recorded."""

    def __init__(self, seq: int | None, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        where = f"seq {seq}" if seq is not None else "ledger"
        super().__init__(f"{where}: {reason}")


class PluginError(DaydreamError):
    """A plugin failed to load, or implements a hook that does not exist."""


class SpecError(DaydreamError):
    """A cohort spec (or a file it includes) is malformed or inconsistent."""


class CatalogError(DaydreamError):
    """A catalog (concepts, templates, models) is malformed or lacks an entry a spec needs."""


class TemplateError(DaydreamError):
    """A prompt template has a syntax error or refers to a variable it is not given."""


class ProviderError(DaydreamError):
    """An LLM provider answered with something we cannot use."""


class ImportFailed(DaydreamError):
    """A data root being imported is unreadable as a whole."""


class NotFound(DaydreamError):
    """A gen_id, cohort or other named object does not exist in the ledger."""
