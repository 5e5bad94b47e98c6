"""A volume attachment's ``connection_info`` as Nova saved it, before and from Queens."""

from __future__ import annotations

import json
import zlib


def connection_info(connector_host: str | None, volume_id: str) -> str:
    """A legacy (cinder v2) attachment's ``connection_info`` as Nova saved it.

    From Mitaka (and Liberty 12.0.3) ``cinder.API.initialize_connection``
    stores the connector the compute sent, whose ``host`` is that compute's
    ``CONF.host`` on libvirt; before, there is no ``connector`` key.
    """
    info: dict = {
        "driver_volume_type": "iscsi",
        "data": {
            "target_iqn": f"iqn.2010-10.org.openstack:volume-{volume_id}",
            "target_portal": "192.0.2.10:3260",
            "target_lun": 1,
            "volume_id": volume_id,
            "access_mode": "rw",
        },
        "serial": volume_id,
    }
    if connector_host is not None:
        info["connector"] = {
            "platform": "x86_64",
            "os_type": "linux2",
            "ip": "192.0.2.20",
            "host": connector_host,
            "multipath": False,
            "initiator": f"iqn.1993-08.org.debian:01:{zlib.crc32(connector_host.encode()):010d}",
        }
    return json.dumps(info)


def attachment_connection_info(volume_id: str, attachment_id: str, instance_uuid: str) -> str:
    """A Queens new-style (Cinder v3 attachment) ``connection_info``: no connector.

    ``nova.volume.cinder._translate_attachment_ref`` keeps the attachment's
    keys (17.0.0 ``nova/volume/cinder.py:_translate_attachment_ref``); the
    connector lives only in Cinder (docs/accuracy.md §7, connector row).
    """
    return json.dumps(
        {
            "driver_volume_type": "iscsi",
            "data": {
                "target_iqn": f"iqn.2010-10.org.openstack:volume-{volume_id}",
                "target_portal": "192.0.2.10:3260",
                "target_lun": 1,
                "volume_id": volume_id,
                "access_mode": "rw",
            },
            "status": "attaching",
            "instance": instance_uuid,
            "attach_mode": "rw",
            "attachment_id": attachment_id,
            "serial": volume_id,
        }
    )
