"""Where audits run: one ``Executor`` protocol (``executor.py``) with an inline and a Ray
implementation, the time-limited measurement every executor uses (``measure.py``), the one way to join
or start Ray (``ray_session.py``) and per-file data work over Ray (``file_map.py``)."""
