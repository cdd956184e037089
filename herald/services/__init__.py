"""herald's binaries, one package each: intake, router, adapters, feedback."""
