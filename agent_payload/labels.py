"""The labels fleet puts on what it creates, read back by the controller's fleet-wide
views and by teardown: which project (playbook) made it, and for replicated services the
service's name, the replica's number and how many replicas are wanted."""

PROJECT = "fleet.project"
SERVICE = "fleet.service"
REPLICA = "fleet.replica"
REPLICAS = "fleet.replicas"


def project_of(plan):
    """The project a container's plan (or config.json) belongs to, else None."""
    return ((plan.get("options") or {}).get("labels") or {}).get(PROJECT)
