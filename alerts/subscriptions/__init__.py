"""Subscribers: the reader's forms (`forms`), signing up to unsubscribing (`lifecycle`), the
confirmation emails they are owed (`confirmations`), the preference centre (`preferences`),
their own data (`personal_data`) and consent records (`consent`). Plain domain code over a
session."""

from alerts.errors import InvalidInput, LinkNotValid
from alerts.subscriptions.confirmations import (
    ConfirmationRequest,
    owe_queued_confirmation,
    reactivate,
    resend_confirmation,
)
from alerts.subscriptions.consent import Consent, record
from alerts.subscriptions.forms import (
    DAILY_CAPS,
    FREQUENCY_LABELS,
    MAX_EMAIL_LENGTH,
    MAX_KEYWORD_LENGTH,
    Choices,
    Preferences,
    form_int,
    instant_fields,
    normalize_email,
    parse_keywords,
    validate,
    validate_preferences,
)
from alerts.subscriptions.lifecycle import (
    ConfirmResult,
    add_keywords,
    confirm,
    find_by_email,
    purge_unconfirmed,
    subscribe,
    unsubscribe,
)
from alerts.subscriptions.personal_data import erase, export_data
from alerts.subscriptions.preferences import (
    PAUSE_WEEKS,
    pause,
    switch_to_weekly,
    undo_unsubscribe,
    unsubscribe_keyword,
    unsubscribe_topic,
    update_preferences,
)

__all__ = [
    "DAILY_CAPS",
    "FREQUENCY_LABELS",
    "MAX_EMAIL_LENGTH",
    "MAX_KEYWORD_LENGTH",
    "PAUSE_WEEKS",
    "Choices",
    "ConfirmResult",
    "ConfirmationRequest",
    "Consent",
    "InvalidInput",
    "LinkNotValid",
    "Preferences",
    "add_keywords",
    "confirm",
    "erase",
    "export_data",
    "find_by_email",
    "form_int",
    "instant_fields",
    "normalize_email",
    "owe_queued_confirmation",
    "parse_keywords",
    "pause",
    "purge_unconfirmed",
    "reactivate",
    "record",
    "resend_confirmation",
    "subscribe",
    "switch_to_weekly",
    "undo_unsubscribe",
    "unsubscribe",
    "unsubscribe_keyword",
    "unsubscribe_topic",
    "update_preferences",
    "validate",
    "validate_preferences",
]
