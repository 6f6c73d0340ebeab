"""One module per ``trustai`` command; each ``register``s its command on the app.

Every module here stays light to import (the work is imported inside each command), so ``trustai
--help`` and ``trustai keys generate`` start at once; the implementations live next door in
``trustai.cli`` (audit, audit_plan, monitor, demo) and the rest of trustai."""
