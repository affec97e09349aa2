"""The `coalmine` command line: validate, start, status, pause/resume/promote/abort.

Layer rule: imports `canary`, `workflows` (types and handles) and temporalio.client;
holds no business logic.
"""
