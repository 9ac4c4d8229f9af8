"""Trace-driven simulation of placement: replays the FGD paper's experiment on any node list and pod trace.

Data: Alibaba clusterdata cluster-trace-gpu-v2023 ("openb"), CC BY 4.0 (Alibaba Group).
"""
