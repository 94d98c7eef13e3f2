"""Drivers: the clients that put load on a path and time it (batch CSV, direct batch, chats, SSE)."""
