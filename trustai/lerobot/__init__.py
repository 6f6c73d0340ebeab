"""LeRobot adaptation: the one interface audits use to run any LeRobot policy (``adapter.py``), reading
LeRobot v3 datasets without loading them whole (``datasets.py``, ``frames.py``), policy batches and
held-out checkpoint inputs built from sampled frames (``policy_batches.py``, ``checkpoint_inputs.py``,
``frame_policy.py``, ``deviation.py``), and small synthetic LeRobot datasets (``synthetic.py``)."""
