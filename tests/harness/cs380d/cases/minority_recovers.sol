0 0: with_everyone
0 0: with_everyone
1 1: waits_for_a_majority
2 0: after_recovery
0 0: with_everyone
1 1: waits_for_a_majority
2 0: after_recovery
