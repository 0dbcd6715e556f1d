"""Where runs execute: the local machine, docker, ssh hosts, cluster engines."""
