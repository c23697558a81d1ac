"""What two or more siphon services truly share: config, the job model, message schemas,
the storage and broker adapters, the metadata client, HTTP error plumbing and logging."""
