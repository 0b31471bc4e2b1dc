"""Where xfer talks to MLflow: the orchestration layer's tracking helpers.

The pure core (data, models, weights, train) never imports MLflow; it calls into this package
lazily, only when a user hands it an MLflow URI. Importing ``xfer.tracking`` itself is free:
each submodule imports MLflow (about 1.5 s) when it is imported.
"""

import urllib.parse


def redacted_uri(uri: str) -> str:
    """A URI without its password (http://user:secret@host -> http://user:***@host): what may be
    printed, logged or stored, since tracking URIs can carry basic-auth credentials."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
