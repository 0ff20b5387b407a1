"""Container detection in real containers: the engine image, cgroup as the host has it and private.

With a private cgroup namespace ``/proc/self/cgroup`` says only ``/`` (as on
every cgroup v2 host by default): detection must then rest on the runtime's
bind mounts in ``/proc/self/mountinfo``. The host these tests run on may
carry ``/.dockerenv`` itself; tests/test_bridge.py checks it is not taken
for a container.
"""

from __future__ import annotations

import json

import pytest

from soma_schedulers.testing import docker_harness as dh

pytestmark = pytest.mark.drms

PROBE = (
    "import json, shutil\n"
    "from soma_schedulers.runner import container_markers, runtime_signs\n"
    "from soma_schedulers.scheduler import build_scheduler\n"
    "with build_scheduler('slurm', None) as s:\n"
    "    print(json.dumps({'markers': container_markers(), 'signs': runtime_signs(),\n"
    "                      'squeue': shutil.which('squeue'), 'bridge': s.runner.describe()}))\n"
)


@pytest.mark.parametrize("cgroupns", ["host", "private"])
def test_engine_container_is_detected(cgroupns: str) -> None:
    ok, reason = dh.docker_available()
    if not ok:
        pytest.skip(reason)
    from soma_schedulers.testing.bridge import ENGINE_IMAGE, ensure_engine_image

    try:
        ensure_engine_image(print)
    except dh.ImageUnavailable as exc:
        pytest.skip(f"engine image unavailable: {exc}")
    out = dh.docker_client().containers.run(
        ENGINE_IMAGE, ["python3", "-c", PROBE], remove=True, cgroupns=cgroupns,
        volumes={dh.source_root(): {"bind": dh.SOURCE_MOUNT, "mode": "ro"}},
    )
    found = json.loads(out.decode().strip().splitlines()[-1])
    assert found["squeue"] is None and found["signs"], found
    assert "/.dockerenv" in found["markers"]
    if cgroupns == "private":
        assert any("bind-mounted by a container runtime" in s for s in found["signs"]), found
    assert found["bridge"] == "ssh bridge to localhost"
