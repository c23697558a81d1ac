"""Metadata service: the only writer of job state (Redis cache + durable manifests)."""
