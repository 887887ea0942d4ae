"""The errors the domain raises on purpose, each caught only where it is meant to be.

A view or a CLI command catches the one it can answer (a form shown again with its field
messages, a 404, a clear line on stderr); anything else is a bug and is left to propagate.
"""

from __future__ import annotations


class AlertsError(Exception):
    """Base of every error the service raises on purpose."""


class InvalidInput(AlertsError):
    """Input that cannot be taken; `errors` maps each bad field to a message for the person
    who typed it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors

    @property
    def message(self) -> str:
        """Every field's message, as one line for a flash or a terminal."""
        return " ".join(str(message) for message in self.errors.values())


class UnknownTopic(InvalidInput):
    """A topic slug that names no topic."""

    def __init__(self, slug: str, field: str = "topic") -> None:
        super().__init__({field: f"There is no topic {slug!r}."})
        self.slug = slug


class LinkNotValid(AlertsError):
    """A reader link that points at nobody (erased, or never issued)."""
