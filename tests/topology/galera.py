"""A 3-node MariaDB Galera cluster on loopback ports (SST by rsync).

Node 1 bootstraps the cluster (``--wsrep-new-cluster``); nodes 2 and 3 join
it and receive a state transfer.  Each node has its own datadir, tmpdir,
socket, client port and Galera, IST and SST ports.
"""

from __future__ import annotations

from pathlib import Path

from tests.topology.servers import MariaDB, free_port

PROVIDER = "/usr/lib/galera/libgalera_smm.so"


def galera_cluster(base: Path, nodes: int = 3) -> list[MariaDB]:
    ports = [(free_port(), free_port(), free_port()) for _ in range(nodes)]
    address = ",".join(f"127.0.0.1:{galera}" for galera, _, _ in ports)
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    servers = []
    for index, (galera, ist, sst) in enumerate(ports, start=1):
        node = MariaDB(
            base / f"node{index}",
            server_id=index,
            extra=[
                "--wsrep-on=ON",
                f"--wsrep-provider={PROVIDER}",
                f"--wsrep-cluster-address=gcomm://{address}",
                "--wsrep-cluster-name=ahb-test",
                f"--wsrep-node-name=node{index}",
                f"--wsrep-node-address=127.0.0.1:{galera}",
                f"--wsrep-sst-receive-address=127.0.0.1:{sst}",
                "--wsrep-sst-method=rsync",
                f"--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{galera};"
                f"ist.recv_addr=127.0.0.1:{ist};gcache.size=32M",
                "--binlog-format=ROW",
                "--default-storage-engine=InnoDB",
                "--innodb-autoinc-lock-mode=2",
                *(["--wsrep-new-cluster"] if index == 1 else []),
            ],
            # As the packaged server runs: the joiner's rsync daemon then runs as
            # mysql too and may write the datadir (as root it drops to "nobody").
            user="mysql",
        )
        # The client address each node announces (wsrep_incoming_addresses): with all
        # nodes on 127.0.0.1 only the port tells them apart.
        node.extra.append(f"--wsrep-node-incoming-address=127.0.0.1:{node.port}")
        node.base.mkdir(parents=True)
        servers.append(node)
        try:
            node.install()
            node.start()
        except BaseException:  # no node left running when the cluster cannot form
            for started in reversed(servers):
                started.remove()
            raise
    return servers
