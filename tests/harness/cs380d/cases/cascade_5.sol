0 0: all_alive
1 1: zero_and_one_dead
2 0: two_dead_zero_back
3 1: three_and_four_dead
0 0: all_alive
1 1: zero_and_one_dead
2 0: two_dead_zero_back
3 1: three_and_four_dead
