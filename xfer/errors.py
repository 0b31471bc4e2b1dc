"""The exception types a command turns into one line on stderr instead of a traceback, and the
exit codes it ends with.

``UsageError``: "the user asked for something invalid". The CLI and the sweep scripts turn it
(and ``FileNotFoundError``) into one line on stderr and exit code 2, before anything is launched
or written. Library code raises it at the edge, where the bad value enters, with a message that
names the field and the valid choices.

``Unavailable``: a service the command needs did not answer, refused the credentials or
refused a write: the tracking server or database (``xfer.tracking.endpoints``), the sweep's S3
storage, an S3 endpoint for ``--weights s3://``. One line and exit code 1: the input may be
fine, and a retry may work. (Exit 2 would be wrong here: KubeRay's entrypoint reads 2 from
``--resume`` as "nothing to resume" and would start a new sweep over an interrupted one.)

The contract for every command and sweep script (exit codes ``EXIT_OK``, ``EXIT_FAILED``,
``EXIT_USAGE`` below):

- bad input or missing configuration: one line on stderr, exit 2 (``UsageError``,
  ``FileNotFoundError``). Missing configuration includes a file that had to be placed
  beforehand and cannot be fetched here (ImageNet weights not in the hub cache with
  ``--no-download`` or no route to the download host, a CIFAR archive offline): the fix is to
  place the file, not to retry.
- a service the user pointed xfer at that does not answer: one line, exit 1 (``Unavailable``).
- never a traceback; on either exit, nothing launched and nothing written: no ``mlflow.db``, no
  empty cache folder, no lock file (tests/test_endpoints.py, tests/test_bad_input.py).
"""

import errno

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2  # done; a failure or a service that did not answer; bad input


class UsageError(ValueError):
    """Invalid input a user can fix: the message names the problem and the valid choices."""


def choice_error(field: str, value: object, valid: "list[str] | tuple[str, ...]") -> UsageError:
    """The standard message for an unknown name: ``unknown model 'x' (valid: a, b, c)``."""
    return UsageError(f"unknown {field} {value!r} (valid: {', '.join(map(str, valid))})")


class Unavailable(RuntimeError):
    """A service the command needs did not answer; the message says which and what to check."""


def one_line(text: str) -> str:
    """A message as the one stderr line the contract promises: control characters that a path
    or a name brought in (a newline in a folder name, an escape sequence) are shown escaped, as
    ``repr`` shows them, instead of breaking the line or the terminal."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text).strip())


def exception_line(exc: BaseException, limit: int) -> str:
    """An exception as one line, ``Type: first line of its message``, at most ``limit``
    characters: what a tag or a message has room for (the rest is in the traceback)."""
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:limit]


# An OSError that names a path the user gave which cannot be one (too long, a loop of links,
# a file where a folder must be): bad input, exit 2. Any other OSError (disk full, I/O error)
# is a failure of the machine: one line, exit 1.
PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR,
                         errno.EINVAL, errno.EACCES, errno.EPERM, errno.ENOENT, errno.EROFS})
