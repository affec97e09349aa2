"""The process that hosts the workflow and activities: config, client, shutdown.

Layer rule: may import everything above; holds no business logic.
"""
