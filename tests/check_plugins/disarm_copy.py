"""The suite's DisARM, registered from a file of its own: the check command must pass it.

    python3 run_benchmarks.py --preset=check --estimator_modules=tests/check_plugins/disarm_copy.py \
        --estimators=disarm_copy
"""

import dataclasses

from estimators import disarm

ESTIMATOR = dataclasses.replace(disarm.make(2), name="disarm_copy", label="DisARM (plugin copy)")
