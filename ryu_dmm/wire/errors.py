"""The one exception the decoder raises."""


class DecodeError(ValueError):
    """A received message is not a well-formed PBU, PBA or Heartbeat.

    ``reason`` is a short machine-readable tag (e.g. ``"truncated"``, ``"bad-checksum"``),
    ``offset`` the byte offset in the Mobility Header where the problem was found.
    """

    def __init__(self, reason: str, detail: str, offset: int = 0) -> None:
        super().__init__(f"{reason} at offset {offset}: {detail}")
        self.reason = reason
        self.detail = detail
        self.offset = offset
