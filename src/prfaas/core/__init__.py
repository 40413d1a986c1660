"""Plain data that every package shares: layer specs, request lifecycle, roles, clocks, units, errors.

Pure: imports no torch, asyncio or sockets.
"""
