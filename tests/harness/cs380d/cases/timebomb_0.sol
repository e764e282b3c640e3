0 0: before
1 1: leader_is_gone
2 0: after
0 0: before
1 1: leader_is_gone
2 0: after
