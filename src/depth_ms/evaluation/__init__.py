"""Offline evaluation: alignment, metrics, pairing by stamp, labeller, reports."""
