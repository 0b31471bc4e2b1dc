"""The exception types a command turns into one line on stderr instead of a traceback.

``UsageError``: "the user asked for something invalid". The CLI and the sweep scripts turn it
(and ``FileNotFoundError``) into one line on stderr and exit code 2, before anything is launched
or written. Library code raises it at the edge, where the bad value enters, with a message that
names the field and the valid choices.

``Unavailable``: a service the command needs (sweep storage on S3) did not answer or refused
the credentials. One line and exit code 1: the input may be fine, and a retry may work. (Exit 2
would be wrong here: KubeRay's entrypoint reads 2 from ``--resume`` as "nothing to resume" and
would start a new sweep over an interrupted one.)
"""


class UsageError(ValueError):
    """Invalid input a user can fix: the message names the problem and the valid choices."""


def choice_error(field: str, value: object, valid: "list[str] | tuple[str, ...]") -> UsageError:
    """The standard message for an unknown name: ``unknown model 'x' (valid: a, b, c)``."""
    return UsageError(f"unknown {field} {value!r} (valid: {', '.join(map(str, valid))})")


class Unavailable(RuntimeError):
    """A service the command needs did not answer; the message says which and what to check."""
