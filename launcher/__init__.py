"""The worker launcher: ``python -m launcher --workers N script.py``.

It spawns and supervises worker processes and never imports the engine.
"""
