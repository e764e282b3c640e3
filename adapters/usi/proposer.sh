#!/bin/sh
# USI paxos-tests: ./proposer.sh <id> <config file>
. "$(dirname "$0")/_paxoi.sh"
run_paxoi proposer "$@"
