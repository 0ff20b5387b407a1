"""The list of test targets exists once: every consumer reads soma_schedulers/testing/registry.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from soma_schedulers.testing import bridge, docker_harness, incontainer, registry

ROOT = Path(__file__).resolve().parents[1]


def test_targets_name_real_clusters_once() -> None:
    names = [t.name for t in registry.TARGETS]
    assert len(names) == len(set(names))
    for t in registry.TARGETS:
        assert t.kind in registry.KINDS
        assert (t.cluster is None) == (t.kind == "local")
        if t.cluster:
            spec = docker_harness.CLUSTERS[t.cluster]
            assert spec.upstream_source == t.upstream or t.kind == "bridge", t.name
            if t.kind == "incontainer":
                assert spec.scheduler_type in registry.IN_CONTAINER_TYPES, t.name
    assert incontainer.ALIASES == {"sge-drmaa": "sge", "sge-drmaa-bulk": "sge", "sge-drmaa-cluster": "sge-cluster",
                                   "slurm-drmaa-bulk": "slurm-drmaa"}
    assert bridge.HOSTS == {"slurm": "slurm-ssh", "htcondor": "htcondor-ssh", "openpbs": "openpbs-ssh",
                            "torque": "torque-ssh"}


def test_specs_carry_their_layout_command_and_bridge_role() -> None:
    bridge_clusters = {t.cluster for t in registry.TARGETS if t.kind == "bridge"}
    for spec in docker_harness.CLUSTERS.values():
        layout = spec.node_layouts()
        expected = spec.nodes if spec.incontainer == "mpi" else 1 if spec.nodes <= 1 else spec.nodes + 1
        assert len(layout) == expected, spec.name
        assert spec.incontainer in incontainer.COMMANDS, spec.name
        assert spec.bridge_host == (spec.name in bridge_clusters), spec.name
    # DRMAA runs in its cluster's own layout: Slurm's controller for slurm-drmaa, SGE's master for sge
    assert docker_harness.CLUSTERS["slurm-drmaa"].node_layouts()[0].environment == {"SLURM_ROLE": "all"}
    assert docker_harness.CLUSTERS["sge-cluster"].node_layouts()[0].hostname == "sgemaster"


def test_no_other_file_lists_the_targets() -> None:
    # two target names on one line is a list of targets written again
    pattern = re.compile(r"slurm-cluster.*slurm-24\.11|sge-drmaa.*slurm-bridge|openpbs-cluster.*torque")
    for rel in ("noxfile.py", "tox.ini", ".github/workflows/ci.yml", "soma_schedulers/testing/incontainer.py",
                "soma_schedulers/testing/bridge.py"):
        text = (ROOT / rel).read_text()
        assert not pattern.search(text), f"{rel} lists targets itself"


def test_matrix_and_run_command_line() -> None:
    out = subprocess.run([sys.executable, "-m", "soma_schedulers.testing.registry", "matrix"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["drms"] == [t.name for t in registry.TARGETS]
    bad = subprocess.run([sys.executable, "-m", "soma_schedulers.testing.registry", "run", "nosuch"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown target 'nosuch'" in bad.stderr
