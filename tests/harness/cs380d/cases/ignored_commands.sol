0 0: kept
