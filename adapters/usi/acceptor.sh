#!/bin/sh
# USI paxos-tests: ./acceptor.sh <id> <config file>
. "$(dirname "$0")/_paxoi.sh"
run_paxoi acceptor "$@"
