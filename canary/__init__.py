"""The coalmine domain, pure.

Spec models, phases, the analysis decision function, event messages and Flagger YAML loading.
Layer rule: imports only the standard library, pydantic and yaml. No I/O, no temporalio,
no kubernetes, no httpx.
"""
