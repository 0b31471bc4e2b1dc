"""Where xfer talks to MLflow: the orchestration layer's tracking helpers.

The pure core (data, models, weights, train) never imports MLflow; it calls into this package
lazily, only when a user hands it an MLflow URI. Importing ``xfer.tracking`` itself is free:
each submodule imports MLflow (about 1.5 s) when it is imported.
"""

import contextlib
import os
import urllib.parse


def redacted_uri(uri: str) -> str:
    """A URI without its password (http://user:secret@host -> http://user:***@host): what may be
    printed, logged or stored, since tracking URIs can carry basic-auth credentials."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@contextlib.contextmanager
def env_overrides(values: dict):
    """Set these environment variables for the block, then restore what was there. MLflow reads
    its HTTP retry settings from the environment at every request, so this is how one call gets
    other retries than the rest."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
