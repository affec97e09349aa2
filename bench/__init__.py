"""`make bench`: what rollouts cost the worker and the server, measured on this machine.

The top layer: it drives the dev server, worker processes and the embedded platform, and the
workflow runs against same-name no-op activities (`bench.fakes`), so the fleet figures are the
cost of orchestration alone.
"""
