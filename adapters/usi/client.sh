#!/bin/sh
# USI paxos-tests: ./client.sh <id> <config file>
. "$(dirname "$0")/_paxoi.sh"
run_paxoi client "$@"
