"""Fakes of outside services (Twilio), for tests, demos and benchmarks."""
