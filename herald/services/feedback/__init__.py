"""herald-feedback: records every delivery's timeline from the status events and answers StatusService."""
