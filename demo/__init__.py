"""The demo: a tiny versioned HTTP app and a bounded load generator, standard library only.

They let `make demo` show a whole rollout on one machine: each version of `demo.app` runs as a
LocalProcess target behind Traefik, and `demo.load` sends it traffic so Prometheus has metrics.
Nothing here imports coalmine.
"""
