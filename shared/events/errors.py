"""What a notification can be wrong with, in words an integrator can act on."""


class InvalidNotification(ValueError):
    """The body is not a notification we understand; the message says what is wrong and where."""


class ChangeTooLarge(InvalidNotification):
    """Even without its values, a change would not fit in one Service Bus message."""
