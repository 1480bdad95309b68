"""Depth estimators: one protocol, a lazy registry, the MindSpore device layer and the models."""
