"""Faces in moving footage: landmark smoothing over time (faces.py)."""
