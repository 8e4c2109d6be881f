"""Every test process sees 8 host (CPU) devices, so mesh layouts run without accelerators.

XLA reads XLA_FLAGS when the first backend initialises, so this must run before any test
touches jax.devices(); pytest loads this conftest before collecting the test modules.
"""

import os

_DEVICE_FLAG = "--xla_force_host_platform_device_count=8"

_flags = os.environ.get("XLA_FLAGS", "")
if _DEVICE_FLAG not in _flags.split():
    # Appended: for a repeated flag the last occurrence wins.
    os.environ["XLA_FLAGS"] = f"{_flags} {_DEVICE_FLAG}".strip()
