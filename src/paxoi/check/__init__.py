"""Result checkers: judge a finished run from what clients proposed and learners learned.

See `paxoi.check.results` for the directory layout and the four checks (integrity,
agreement, termination, duplicates); `paxoi check DIR` is the command-line front end.
"""

from .results import (
    Learned,
    Problem,
    Proposal,
    Report,
    Results,
    ResultsError,
    check,
    check_agreement,
    check_duplicates,
    check_integrity,
    check_termination,
    load_results,
    parse_chat_log,
    parse_learned,
    parse_proposals_jsonl,
)

__all__ = [
    "Learned",
    "Problem",
    "Proposal",
    "Report",
    "Results",
    "ResultsError",
    "check",
    "check_agreement",
    "check_duplicates",
    "check_integrity",
    "check_termination",
    "load_results",
    "parse_chat_log",
    "parse_learned",
    "parse_proposals_jsonl",
]
