0 0: before
1 1: two_accepts_left
2 0: after
0 0: before
1 1: two_accepts_left
2 0: after
