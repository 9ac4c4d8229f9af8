"""Device and node health: pure parsers of vendor fault reports and the cordon rule.

- ``nvidia``: kernel-log XID lines, ``nvidia-smi -q -d ECC`` and ``nvidia-smi nvlink -s``;
- ``ascend``: ``npu-smi info -t health -i <id>`` alarms;
- ``scope``: whether a device fault takes out that device only or its whole node;
- ``cordon``: when a node or a device is taken out of placement (with its reason) and when it may return.

No I/O: the agent runs the tools and passes their text here (``agent/detection/faults.py``).
"""
