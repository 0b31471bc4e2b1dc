"""The one exception type that means "the user asked for something invalid".

The CLI and the sweep scripts turn it (and ``FileNotFoundError``) into one line on stderr and
exit code 2, before anything is launched or written. Library code raises it at the edge, where
the bad value enters, with a message that names the field and the valid choices.
"""


class UsageError(ValueError):
    """Invalid input a user can fix: the message names the problem and the valid choices."""


def choice_error(field: str, value: object, valid: "list[str] | tuple[str, ...]") -> UsageError:
    """The standard message for an unknown name: ``unknown model 'x' (valid: a, b, c)``."""
    return UsageError(f"unknown {field} {value!r} (valid: {', '.join(map(str, valid))})")
