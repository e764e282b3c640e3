"""paxoi.wire: how paxoi's values and messages become bytes, and back, strictly."""
