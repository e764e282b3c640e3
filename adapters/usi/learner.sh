#!/bin/sh
# USI paxos-tests: ./learner.sh <id> <config file>
. "$(dirname "$0")/_paxoi.sh"
run_paxoi learner "$@"
