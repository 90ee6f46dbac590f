"""A local Service Bus broker that the real azure-servicebus SDK talks to over AMQP 1.0 (the Azurite of the bus)."""
