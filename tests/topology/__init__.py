"""Throwaway database servers and topologies for tests: restartable servers, a MariaDB
primary with a GTID replica, a PostgreSQL primary with a streaming replica.

Each server runs on its own loopback port with its own data directory and its
own tmpdir (a starting ``mariadbd`` deletes every ``#sql*`` file in its tmpdir:
sharing ``/tmp`` with the machine's server could destroy its temporary tables),
and is stopped and removed at the end.  The machine's own servers on 3306 and
5432 are never touched.  The code is short on purpose: it is also how an
operator can build the same topologies by hand.
"""
