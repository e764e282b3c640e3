0 0: hello there, world
1 1: a b c d e
2 0: single
3 1: números ünïcode ✓
