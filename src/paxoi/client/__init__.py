"""paxoi.client: submit commands to a paxoi cluster, synchronously or with asyncio."""

from .client import (
    AsyncClient,
    Client,
    ClientClosed,
    ClientError,
    ServerRefused,
    SubmitTimeout,
)

__all__ = ["AsyncClient", "Client", "ClientClosed", "ClientError", "ServerRefused", "SubmitTimeout"]
