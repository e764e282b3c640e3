"""paxoi.transport: how servers and clients reach each other (asyncio TCP)."""
