"""The bottom layer: atomic file writes, device and precision choices, seeding, phase timing.

Imports only the standard library, numpy and torch; every other package of the SDK may import it.
"""
