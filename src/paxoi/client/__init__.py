"""paxoi.client: submit commands to a paxoi cluster, synchronously or with asyncio, and
record what happened as a history for the linearizability checker."""

from .client import (
    AsyncClient,
    Client,
    ClientClosed,
    ClientError,
    PipelineFull,
    ServerRefused,
    SubmitTimeout,
)
from .history import HistoryError, HistoryRecorder, RecordingKV, load_history

__all__ = [
    "AsyncClient",
    "Client",
    "ClientClosed",
    "ClientError",
    "HistoryError",
    "HistoryRecorder",
    "PipelineFull",
    "RecordingKV",
    "ServerRefused",
    "SubmitTimeout",
    "load_history",
]
