"""The suite's RODEO with K = 2 (a stateful estimator), registered from a file of its own: the check must pass it."""

import dataclasses

from estimators import rodeo

ESTIMATOR = dataclasses.replace(rodeo.make(2), name="rodeo_copy", label="RODEO (plugin copy)")
