"""Orchestration only.

`CanaryWorkflow` loops observe -> decide -> act -> wait. Layer rule: imports `canary` and
`temporalio.workflow`; calls activities by name. No I/O, no wall clock, no randomness.
"""
