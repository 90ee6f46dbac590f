"""What a notification can be wrong with, in words an integrator can act on."""


class InvalidNotification(ValueError):
    """The body is not a notification we understand; the message says what is wrong and where."""


class ChangeTooLarge(InvalidNotification):
    """Even without its values, a change would not fit in one Service Bus message. Raised by ingest once the other
    changes of the notification (an F&O array) are queued: `refused` names the change(s) left out (`body[2]`…),
    `queued` the event ids of the rest."""

    def __init__(self, message: str, refused: tuple[str, ...] = (), queued: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.refused, self.queued = refused, queued
