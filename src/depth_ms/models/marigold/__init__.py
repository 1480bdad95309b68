"""Streaming Marigold on MindSpore: schedulers, checkpoint loading, engine, estimator."""
