"""Workloads: tenants run training and batch jobs on their leased capacity, through the sites' engines."""
