"""``runner target ...``: its commands and their handlers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runner.cli.context import Context
from runner.cli.parser import Tree, port_number
from runner.cli.render import note
from runner.errors import NotFoundError, UserError


def add_commands(tree: Tree) -> None:
    """Add the ``target`` commands to the command tree."""
    target = tree.group(
        "target",
        "compute targets: where runs execute",
        """
        examples:
          runner target list -o table
          runner target attach gpu-box --address 10.0.0.5 --username me --private-key-file ~/.ssh/id_ed25519
          runner target attach cluster --kind slurm --address login.hpc --username me \
              --private-key-file ~/.ssh/id_ed25519 --partition gpu --shared-dir '~/runner'
          runner target detach gpu-box
        """,
    )
    tree.leaf(
        target,
        "list",
        "List compute targets ('local' always exists): name, type, address, port, user.",
        """
        Secrets (an SSH password) are never shown: they stay in the workspace keyvault.

        examples:
          runner target list -o table
          runner target list --query "[?type=='remote'].name" -o tsv
        """,
        _target_list,
    )
    p = tree.leaf(
        target,
        "attach",
        "Attach an SSH host or a Slurm cluster as a compute target (checked before it is recorded).",
        """
        --kind remote (the default) attaches one host reached over SSH; --kind slurm attaches
        a Slurm cluster through its login node, which runs each job with sbatch: give the
        folder every node sees at the same path (--shared-dir) and, if not the default one,
        the partition; attaching also checks that sbatch is there, the partition exists and
        the shared folder is writable.

        Attaching logs in to the host first: its key must be known (in WS/ssh/known_hosts or
        ~/.ssh/known_hosts), the login accepted, and python3 >= 3.9 on the host's PATH;
        nothing is recorded when a check fails. A host whose key is not known yet shows its
        key type and SHA256 fingerprint: compare it with the host's own
        (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run there), then answer the
        prompt, or, without a terminal, pass it as --accept-host-key. An accepted key is
        added to WS/ssh/known_hosts (never to ~/.ssh/known_hosts). The password, if any, is
        read from stdin and kept in the workspace keyvault.

        examples:
          runner target attach gpu-box --address 10.0.0.5 --username me --private-key-file ~/.ssh/id_ed25519
          runner target attach gpu-box --address 10.0.0.5 --username me --private-key-file ~/.ssh/id_ed25519 \\
              --accept-host-key SHA256:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg
          echo "$PASS" | runner target attach lab --address lab.local --ssh-port 2222 --username me --password-stdin
          runner target attach cluster --kind slurm --address login.hpc --username me \
              --private-key-file ~/.ssh/id_ed25519 --partition gpu --shared-dir /shared/me/runner \
              --sbatch-arg=--mem=32G
        """,
        _target_attach,
    )
    p.add_argument("name", metavar="NAME", help="name of the new target")
    p.add_argument(
        "--kind",
        choices=("remote", "slurm"),
        default="remote",
        help="remote: one SSH host (default); slurm: a Slurm cluster's login node",
    )
    p.add_argument("--address", required=True, help="host name or IP address")
    p.add_argument("--ssh-port", type=port_number, default=22, metavar="PORT", help="default: 22")
    p.add_argument("--username", required=True, help="user to log in as")
    p.add_argument("--private-key-file", metavar="FILE", help="SSH private key")
    p.add_argument("--password-stdin", action="store_true", help="read the SSH password from stdin")
    p.add_argument(
        "--accept-host-key",
        metavar="SHA256:...",
        help="accept a host not known yet if its key has this fingerprint (as "
        "`ssh-keygen -l` prints it); a different key fails",
    )
    slurm = p.add_argument_group("slurm (with --kind slurm)")
    slurm.add_argument(
        "--shared-dir",
        metavar="DIR",
        help="a folder the login node and every compute node see at the same path (required)",
    )
    slurm.add_argument("--partition", help="sbatch --partition (default: the cluster's)")
    slurm.add_argument("--account", help="sbatch --account")
    slurm.add_argument("--qos", help="sbatch --qos")
    slurm.add_argument(
        "--sbatch-arg",
        action="append",
        metavar="--OPTION=VALUE",
        help="another sbatch option for every job (repeatable), e.g. --sbatch-arg=--mem=32G",
    )
    p = tree.leaf(
        target,
        "detach",
        "Detach a compute target (runs made on it stay recorded).",
        """
        Its secrets leave the workspace keyvault, and its host's key leaves WS/ssh/known_hosts
        unless another attached target uses the same host and port.

        example:
          runner target detach gpu-box
        """,
        _target_detach,
    )
    p.add_argument("name", metavar="NAME")


_TARGET_COLUMNS = ("name", "type", "address", "sshPort", "username")


def _target_row(target: Any) -> dict[str, Any]:
    """What ``target list`` shows of a target: where and as whom, never a secret."""
    config = target.config
    row = {
        "name": target.name,
        "type": target.type,
        "address": config.get("address"),
        "sshPort": config.get("ssh_port"),
        "username": config.get("username"),
        "privateKeyFile": config.get("private_key_file"),
        "password": "keyvault" if config.get("password_secret") else None,
    }
    if target.type == "slurm":
        row.update(
            partition=config.get("partition"),
            sharedDir=config.get("shared_dir"),
            account=config.get("account"),
            qos=config.get("qos"),
            sbatchArgs=config.get("sbatch_args"),
        )
    return row


def _target_list(ctx: Context) -> int:
    targets = ctx.workspace().compute_targets.values()
    ctx.emit([_target_row(t) for t in targets], _TARGET_COLUMNS)
    return 0


def _target_attach(ctx: Context) -> int:
    from runner.compute import ComputeTarget, RemoteCompute, SlurmCompute
    from runner.errors import HostKeyError

    args = ctx.args
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UserError("--password-stdin read an empty password; pipe the password in")
    key_file = None
    if args.private_key_file:
        key = Path(args.private_key_file).expanduser()
        if not key.is_file():
            raise NotFoundError(f"--private-key-file: no file at {key}")
        key_file = str(key.resolve())
    if key_file is None and password is None:
        raise UserError("pass --private-key-file FILE or --password-stdin to log in to the host")

    slurm_options = [args.shared_dir, args.partition, args.account, args.qos, args.sbatch_arg]
    if args.kind == "slurm" and not args.shared_dir:
        raise UserError(
            "--kind slurm needs --shared-dir DIR: a folder every node of the cluster sees"
        )
    if args.kind != "slurm" and any(o is not None for o in slurm_options):
        raise UserError(
            "--shared-dir, --partition, --account, --qos and --sbatch-arg need --kind slurm"
        )

    def attach(fingerprint: str | None) -> Any:
        login: dict[str, Any] = {
            "address": args.address,
            "ssh_port": args.ssh_port,
            "username": args.username,
            "password": password,
            "private_key_file": key_file,
            "host_key_fingerprint": fingerprint,
        }
        if args.kind == "slurm":
            config: Any = SlurmCompute.attach_configuration(
                **login,
                shared_dir=args.shared_dir,
                partition=args.partition,
                account=args.account,
                qos=args.qos,
                sbatch_args=args.sbatch_arg,
            )
        else:
            config = RemoteCompute.attach_configuration(**login)
        return ComputeTarget.attach(ctx.workspace(), args.name, config)

    try:
        target = attach(args.accept_host_key)
    except HostKeyError as err:
        if not err.unknown:
            raise
        if not sys.stdin.isatty():
            raise HostKeyError(
                f"the host key of {err.host} is not known yet: it presents {err.key_type} "
                f"{err.fingerprint}",
                host=err.host,
                key_type=err.key_type,
                fingerprint=err.fingerprint,
                hint="if that is the host's key (on the host: `ssh-keygen -lf "
                "/etc/ssh/ssh_host_*_key.pub`), run the command again with --accept-host-key "
                f"{err.fingerprint}",
            ) from None
        if not _confirm_host_key(err, args.name):
            raise UserError(
                f"host key {err.fingerprint} of {err.host} not accepted; nothing was attached"
            ) from None
        target = attach(err.fingerprint)
        note(f"accepted the {err.key_type} key {err.fingerprint} of {err.host}")
    ctx.emit(_target_row(target))
    return 0


def _confirm_host_key(err: Any, name: str) -> bool:
    """Show an unknown host key on the terminal and ask whether to accept it."""
    sys.stderr.write(
        f"The host key of {err.host} (target {name!r}) is not known yet.\n"
        f"  host:        {err.host}\n"
        f"  key type:    {err.key_type}\n"
        f"  fingerprint: {err.fingerprint}\n"
        "Compare it with the host's own: `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` there.\n"
        "Accept this host key? [y/N] "
    )
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _target_detach(ctx: Context) -> int:
    from runner.compute import ComputeTarget

    ComputeTarget(ctx.workspace(), ctx.args.name).detach()
    ctx.emit({"name": ctx.args.name, "detached": True})
    return 0
