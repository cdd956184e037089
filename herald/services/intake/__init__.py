"""herald-intake: the front door. Authenticates apps, validates and render-checks messages, queues them."""
