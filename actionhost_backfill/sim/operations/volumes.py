"""Volume attachments: their connectors, attachment ids, and the offloaded volume operations."""

from __future__ import annotations

import uuid as uuidlib

from actionhost_backfill.nova.releases import Behaviour
from actionhost_backfill.sim.clock import db_time
from actionhost_backfill.sim.connection_info import attachment_connection_info
from actionhost_backfill.sim.records import Volume


class Volumes:
    """Volume attachments: their connectors, attachment ids, and the offloaded volume operations."""

    __slots__ = ()

    def refresh_volumes(self, host: str, t: int, beh: Behaviour) -> None:
        """initialize_connection from ``host``: the saved connector names it from Mitaka."""
        beh = self.sim.compute_behaviour(host, t, beh)  # the compute's own release
        for volume in self.volumes:
            if volume.deleted_at is None:
                volume.connected = True
                if volume.attachment_id is None:
                    volume.connector = host if beh.stores_connector else None
                volume.updated = t

    def new_attachments(self) -> None:
        """Queens replaces new-style attachment ids on offload and live migration."""
        for volume in self.volumes:
            if volume.attachment_id is not None and volume.deleted_at is None:
                volume.attachment_id = self.random_uuid()

    def write_volume(self, volume: Volume) -> None:
        extra: dict = {}
        if not volume.connected:
            extra["connection_info_json"] = None
        elif volume.attachment_id is not None:
            volume_id = str(uuidlib.UUID(int=(3 << 100) + volume.id))
            extra["connection_info_json"] = attachment_connection_info(
                volume_id, volume.attachment_id, self.uuid
            )
        self.b.volume_attachment(
            self.uuid,
            db_time(volume.created),
            connector_host=volume.connector,
            deleted_at=db_time(volume.deleted_at) if volume.deleted_at is not None else None,
            attachment_id=volume.attachment_id,
            archived=self.archived,
            row_id=volume.id,
            updated=db_time(volume.updated),
            boot_index=0 if volume.boot else None,
            **extra,
        )

    def offloaded_volume_operation(self) -> None:
        """Queens attach/detach on a shelved-offloaded instance: api_* events only."""
        t0 = self.t
        s = self.step_for(t0)
        live = [v for v in self.volumes if v.deleted_at is None and not v.boot]
        name = "detach_volume" if live and self.r() < 0.5 else "attach_volume"
        a = s.action(name, t0)
        start = t0 + self.between(0, 1)
        end = start + self.between(1, 5)
        s.start(start, a, f"api_{name}", self.api())
        s.finish(end, a, f"api_{name}")
        s.commit()
        if name == "attach_volume":  # not connected until an unshelve attaches it
            volume = Volume(self.b.next_id("block_device_mapping"), start)
            volume.attachment_id = self.random_uuid()
            self.volumes.append(volume)
        else:
            volume = live[int(self.r() * len(live))]
            volume.deleted_at = end
            self.write_volume(volume)
            self.volumes.remove(volume)
