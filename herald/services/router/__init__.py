"""herald-router: decides who gets a message on which channel, and queues one delivery job per recipient x channel."""
