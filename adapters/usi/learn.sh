#!/bin/sh
# USI paxos-tests (the handout's name for the learner): ./learn.sh <id> <config file>
. "$(dirname "$0")/_paxoi.sh"
run_paxoi learner "$@"
