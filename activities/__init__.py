"""The only code that touches the world: Kubernetes, routers, Prometheus, webhooks.

Layer rule: imports `canary`, kubernetes and httpx. The
`@activity.defn` functions are thin shells over one provider class per module; nothing
here decides anything about the rollout.
"""
