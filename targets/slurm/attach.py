"""What attaching a Slurm cluster checks on its login node, before anything is recorded."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from runner.errors import TargetUnavailableError
from targets.slurm import shell_path
from targets.ssh.connection import Connection, Endpoint


def check_cluster(ws: Any, endpoint: Endpoint, config: Mapping[str, Any]) -> None:
    """``sbatch`` on the login node's PATH, the partition known to Slurm, and ``shared_dir``
    writable there (made if missing); TargetUnavailableError with the fix otherwise."""
    shared = shell_path(str(config["shared_dir"]))
    partition = config.get("partition")
    script = [
        'command -v sbatch >/dev/null || { echo "no-sbatch"; exit 0; }',
        f'mkdir -p "{shared}" 2>/dev/null && probe="{shared}/.runner-attach-$$" '
        '&& : > "$probe" 2>/dev/null && rm -f "$probe" || echo "no-shared"',
    ]
    if partition:
        quoted = shlex.quote(str(partition))
        script.append(f'[ -n "$(sinfo -h -p {quoted} -o %P 2>/dev/null)" ] || echo "no-partition"')
    conn = Connection(endpoint)
    try:
        proc = conn.run("; ".join(script), timeout_s=60)
    finally:
        conn.close()
    said = proc.stdout.decode("utf-8", "replace").split()
    where = f"{endpoint.user}@{endpoint.address}"
    if proc.returncode != 0:
        raise TargetUnavailableError(
            f"could not check the Slurm login node {where}: "
            + proc.stderr.decode("utf-8", "replace").strip()
        )
    if "no-sbatch" in said:
        raise TargetUnavailableError(
            f"{where} has no sbatch on its PATH: attach the cluster's login node (where "
            "`sbatch --version` works), or add Slurm's bin folder to PATH in ~/.bashrc there"
        )
    if "no-shared" in said:
        raise TargetUnavailableError(
            f"shared_dir={config['shared_dir']!r} is not writable by {where}; give a folder "
            "on the cluster's shared file system that this user may write"
        )
    if "no-partition" in said:
        raise TargetUnavailableError(
            f"Slurm on {where} has no partition {partition!r}; `sinfo -s` there lists them"
        )
