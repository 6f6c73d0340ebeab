"""trustai: trustworthy-AI governance for robot foundation model training.

Hooks inside LeRobot training runs, a tamper-evident evidence ledger, signed model cards and
compliance reports. Import submodules directly, e.g. ``from trustai.audits import data``.
"""

__version__ = "0.1.0"
