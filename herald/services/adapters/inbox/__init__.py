"""The in-app inbox channel: a per-user timeline with a gap-free sequence (store), filled by the inbox consumer
(writer), read by devices through InboxService (service) with app keys or device tokens (tokens), and kept live
across replicas by notices on core NATS (notices)."""
