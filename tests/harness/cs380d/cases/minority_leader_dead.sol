0 0: first
1 1: stuck
2 1: stuck_too
3 0: last
0 0: first
1 1: stuck
2 1: stuck_too
3 0: last
