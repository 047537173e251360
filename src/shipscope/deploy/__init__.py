"""Commands that run inside a deploy pipeline: record, mark, notify, gate, freeze, analyze, smoke, rollback.

Each prints what it did, exits with a documented code (docs/deploy.md) and records what happened in shipscope
(``ledger``): deployments as ``deployment`` events, verdicts, markers, freezes and overrides as ``timeline_event``s
of the deployed service, so DORA and the incident timeline see them.
"""
