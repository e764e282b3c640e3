"""paxoi.server: the networked server (runtime) and its deployment configuration."""
