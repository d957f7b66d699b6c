"""A local development stack: PostgreSQL, Redis and a Fides server for the demo, end-to-end tests and benchmarks."""
