"""The one error type of hwsim: a user input (a file, an option) that cannot be used.

Every reader raises it with one line naming the file and the key; the commands turn it into a
``click.ClickException``. It lives apart from the readers so that a module needs no reader to raise it.
"""

from __future__ import annotations


class InputError(ValueError):
    """A user input (file) is malformed; the message is one line naming the file and the key.

    Line breaks inside it (a key or value quoted from the file) are shown escaped, so that the
    message stays one line whatever the file holds.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))
