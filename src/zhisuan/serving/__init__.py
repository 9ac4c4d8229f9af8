"""Model services: the registry of servable models, deployments of N replicas, their runtime."""
