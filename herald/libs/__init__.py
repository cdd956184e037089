"""What several herald services truly share: config, telemetry, the bus, the store base, gRPC plumbing."""
