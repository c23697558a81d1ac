"""Upload service: takes a video, stores it, records a queued job, publishes its conversion task."""
