"""Every destination the relay delivers to. Importing this package registers them all with the
executions registry: adding a destination is one line here (and its own folder)."""

from __future__ import annotations

from relay.destinations import batch, optimized, optimove
from relay.executions import registry

ALL = (optimized.DESTINATION, optimove.DESTINATION, batch.DESTINATION)

for _destination in ALL:
    registry.register(_destination)
