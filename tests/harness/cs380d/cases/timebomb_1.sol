0 0: before
1 1: one_accept_left
2 0: after
0 0: before
1 1: one_accept_left
2 0: after
