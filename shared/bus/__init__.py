"""Service Bus adapters: what the engine puts on, and takes off, the `changes` queue."""
