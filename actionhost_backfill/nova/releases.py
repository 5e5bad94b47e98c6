"""Nova releases Icehouse ... Rocky, and how each one recorded an instance's history.

The simulator (``sim/operations/``) asks these switches how the release in
service behaved; nothing here touches a database.  Every switch names the
``docs/accuracy.md`` section that states the behaviour (§1 events, §2 builds,
§3 cold moves, §4 live migrations, §5 evacuations, §6 shelve, §7 faults and
volumes, §9 Icehouse/Juno) and/or the Nova tag, file and function it was read
from (tags ``2014.1`` Icehouse, ``2014.2`` Juno, ``2015.1.0`` Kilo, ``12.0.0`` Liberty, ``13.0.0``
Mitaka, ``14.0.0`` Newton, ``15.0.0`` Ocata, ``16.0.0`` Pike, ``17.0.0``
Queens, ``18.0.0`` Rocky).  Abbreviations (``docs/accuracy.md`` writes M for CM, CM for CoM): CM =
``nova/compute/manager.py``, CA = ``nova/compute/api.py``, CoM =
``nova/conductor/manager.py``, MT/LMT = ``nova/conductor/tasks/migrate.py`` /
``live_migrate.py``, RT = ``nova/compute/resource_tracker.py``, CR =
``nova/compute/rpcapi.py``, DB =
``nova/db/sqlalchemy/api.py``.

Rocky is simulated as Queens plus one change: every event row stores the host
that recorded it (``records_event_host``).  That is the cut-over the toolkit
exists for; the few other Rocky changes are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Release:
    name: str
    tag: str
    released: date


#: Nova's releases in order, with the tag Nova's source was read at.
RELEASES = (
    Release("icehouse", "2014.1", date(2014, 4, 17)),
    Release("juno", "2014.2", date(2014, 10, 16)),
    Release("kilo", "2015.1.0", date(2015, 4, 30)),
    Release("liberty", "12.0.0", date(2015, 10, 15)),
    Release("mitaka", "13.0.0", date(2016, 4, 7)),
    Release("newton", "14.0.0", date(2016, 10, 6)),
    Release("ocata", "15.0.0", date(2017, 2, 22)),
    Release("pike", "16.0.0", date(2017, 8, 30)),
    Release("queens", "17.0.0", date(2018, 2, 28)),
    Release("rocky", "18.0.0", date(2018, 8, 30)),
)
NAMES = tuple(r.name for r in RELEASES)
#: Releases a simulation may start or stop at before the cut-over; Rocky is
#: always the era after it.
SIMULATED = NAMES[:-1]
ROCKY = "rocky"


#: Releases whose API records no live migration at all (no action, no event,
#: no row): the host may change with no trace (2014.1/2014.2
#: compute/instance_actions.py has no LIVE_MIGRATION; API.live_migrate only sets
#: task_state and calls the conductor, whose _live_migrate writes no row).
UNTRACKED = ("icehouse", "juno")
#: The first release that records every live migration as an action.
FIRST_TRACKED = "kilo"


def index(name: str) -> int:
    """Position of a release (icehouse = 0); ``ValueError`` for an unknown name."""
    return NAMES.index(name)


def between(first: str, last: str) -> tuple[str, ...]:
    """The releases from ``first`` to ``last``, both included."""
    return NAMES[index(first) : index(last) + 1]


@dataclass(frozen=True)
class Behaviour:
    """What one release wrote (or did not write) for each kind of operation."""

    release: str

    # -- every event -------------------------------------------------------------------
    records_event_host: bool
    conductor_prefixed_events: bool
    action_updated_at_follows_events: bool

    # -- builds ------------------------------------------------------------------------
    build_event: str
    reschedule_records_fault: bool
    final_build_failure_is_error: bool
    nulls_host_after_failed_build: bool
    buries_unschedulable_builds_in_cell0: bool

    # -- cold moves (resize / migrate) -------------------------------------------------
    records_migrate_action: bool
    migration_row_creator: str
    records_migration_type: bool
    errors_out_migrations_always: bool
    revert_copies_source_into_dest_compute: bool
    delete_events_go_to_newest_action: bool

    # -- live migration ----------------------------------------------------------------
    live_migration_action: bool
    live_migration_recorded: bool
    live_migration_first_status: str
    live_migration_failed_status: str
    live_migration_nodes: bool
    live_migration_abort: bool
    host_moves_despite_post_failure: bool
    post_at_destination_is_call: bool
    source_check_refreshes_connection: bool

    # -- evacuation and rebuild ---------------------------------------------------------
    rebuild_through_conductor: bool
    evacuation_row: bool
    evacuation_sets_host_before_spawn: bool
    forced_evacuation_skips_claim: bool
    evacuation_no_valid_host_status: str
    evacuation_no_valid_host_faults: int
    completes_evacuations: tuple[str, ...]
    completes_evacuations_of_deleted: bool

    # -- shelve / unshelve -------------------------------------------------------------
    conductor_soft_deletes_shelve_keys: bool
    unshelve_claim_abort_nulls_host: bool

    # -- operations Queens started to record -------------------------------------------
    records_volume_interface_image_lock_actions: bool
    new_style_volume_attach: bool
    trigger_crash_dump: bool
    extend_volume: bool
    live_migration_force_complete: bool

    # -- volumes -----------------------------------------------------------------------
    stores_connector: bool

    # -- deletes and archiving ---------------------------------------------------------
    destroy_soft_deletes_system_metadata: bool
    destroy_soft_deletes_migrations: bool
    archives_instances_with_actions: bool


def behaviour(name: str) -> Behaviour:
    """The switches of release ``name`` (Rocky = Queens + recorded event hosts)."""
    n = index(name)

    def since(first: str) -> bool:
        return n >= index(first)

    return Behaviour(
        release=name,
        # accuracy §1 (event host): the event ``host`` is written from 18.0.0
        # (InstanceActionEvent 1.2, 18.0.0 compute/utils.py EventReporter ~1097).
        records_event_host=since("rocky"),
        # accuracy §1 (event names): ``@wrap_instance_event(prefix='conductor')``
        # on migrate_server and live_migrate_instance from 14.0.0 (CoM ~182/~305).
        conductor_prefixed_events=since("newton"),
        # DB:action_event_finish: until 16.0.0 an action's updated_at changes only when an
        # event's Error sets message='Error'; from 17.0.0 DB:action_event_start/finish
        # set it to each event's start/finish time (start_time at creation).
        action_updated_at_follows_events=since("queens"),
        # Which compute method records a build attempt.  2014.1: the conductor casts
        # the scheduler's run_instance (CoM build_instances ~793), which casts the
        # legacy CM run_instance (@wrap_instance_event ~2061): compute_run_instance.
        # 2014.2: CoM build_instances calls CR build_and_run_instance (~636), wrapped
        # at CM ~1964 and synchronous (do_build_and_run_instance is only
        # @synchronized): compute_build_and_run_instance.  2015.1.0 wraps the inner
        # _do_build_and_run_instance (CM ~2180).
        build_event=(
            "compute_run_instance"
            if name == "icehouse"
            else "compute_build_and_run_instance"
            if name == "juno"
            else "compute__do_build_and_run_instance"
        ),
        # 2014.1 CM _reschedule_or_error (~1373) records the candidate's fault
        # (add_instance_fault_from_exc) before rescheduling, and _run_instance
        # swallows the RescheduledException (~1194): the event ends Success *with*
        # a fault.  Any other error re-raises (~1203): Error, with
        # wrap_instance_fault's fault.  Juno's build_and_run_instance path is
        # Kilo-like (no fault on a reschedule).
        reschedule_records_fault=name == "icehouse",
        final_build_failure_is_error=name == "icehouse",
        # accuracy §2 (host after a failed build): Kilo's _do_build_and_run_instance never nulls
        # host/node (2015.1.0 CM ~2222-2287); 12.0.0 adds _nil_out_instance_obj_host_and_node
        # to the reschedule and failure branches (12.0.0 CM ~1917-1974).
        nulls_host_after_failed_build=since("liberty"),
        # From 15.0.0 a first scheduling failure goes to
        # CoM:_bury_in_cell0 (15.0.0 CoM ~800, from build_instances/schedule_and_build_instances); the cell gets no instance and no action.
        buries_unschedulable_builds_in_cell0=since("ocata"),
        # 2014.1 CA resize records RESIZE for a migrate too (~2449; instance_actions
        # has no MIGRATE); 2014.2 CA resize records MIGRATE without a flavor (~2552).
        records_migrate_action=since("juno"),
        # accuracy §3 (rows 1-3): Kilo RT.resize_claim creates the row after the claim
        # (Icehouse and Juno as Kilo: RT.resize_claim, untyped rows)
        # test (2015.1.0 RT ~148); 12.0.0-16.0.0 RT._move_claim before it; 17.0.0
        # MT._preallocate_migration pre-creates (and reuses) one row in the conductor.
        migration_row_creator=(
            "dest-after-claim"
            if n <= index("kilo")
            else "conductor"
            if since("queens")
            else "dest-before-claim"
        ),
        # accuracy §3 (row 1): migration_type arrives with 12.0.0 migration 293_add_migration_type;
        # Kilo rows keep NULL.
        records_migration_type=since("liberty"),
        # accuracy §3 (errors_out_migration): 17.0.0 CM:errors_out_migration_ctxt sets 'error' on any
        # exception; before, only when the status was migrating/post-migrating.
        errors_out_migrations_always=since("queens"),
        # accuracy §3 (revert rewrites dest_compute): CM:finish_revert_resize sets dest_compute := source_compute in
        # 2015.1.0 ~3772 through 14.0.0 ~3570; removed by b816e3cc33 (15.0.0).  2014.1
        # (~3227) and 2014.2 (~3544) only set instance.host: dest_compute stays.
        revert_copies_source_into_dest_compute=since("kilo") and not since("ocata"),
        # accuracy §1 (two actions of one request): DB:_action_get_by_request_id picks the oldest action of a
        # request id until 16.0.0, the newest from 17.0.0 (b933847cbb).
        delete_events_go_to_newest_action=since("queens"),
        # 2014.1/2014.2: no LIVE_MIGRATION in compute/instance_actions.py (added in
        # 2015.1.0); CA live_migrate (2014.1 ~3008, 2014.2 ~3145) sets task_state
        # MIGRATING and calls the conductor; no compute LM method is event-wrapped;
        # CoM _live_migrate (2014.1 ~752) writes no row.  No trace at all.
        live_migration_action=since("kilo"),
        # accuracy §4 (rows 1-2): Kilo records a live-migration action with no events
        # and no migration row; 12.0.0 CoM _live_migrate creates the row and the
        # compute LM methods are event-wrapped.
        live_migration_recorded=since("liberty"),
        # accuracy §4 (row 2): the conductor's row starts 'pre-migrating' in 12.0.0,
        # 'accepted' from 13.0.0.
        live_migration_first_status="accepted" if since("mitaka") else "pre-migrating",
        # accuracy §4 (rollback statuses): pre_live_migration and post-flip failures
        # end 'failed' in 12.0.0/13.0.0, 'error' from 14.0.0 (CM:_rollback_live_migration,
        # 14.0.0 _set_migration_status(migration, 'error')).
        live_migration_failed_status="error" if since("newton") else "failed",
        # source_node/dest_node of LM rows are set only from 17.0.0 (LMT:LiveMigrationTask._execute).
        live_migration_nodes=since("queens"),
        # accuracy §4 (force-complete and abort): CA:live_migrate_abort (action live_migration_cancel)
        # and the 'cancelled' status from 13.0.0.
        live_migration_abort=since("mitaka"),
        # accuracy §4 (row 3): from 13.0.0 post_live_migration_at_destination saves the
        # host in a ``finally`` even when the driver call failed (CM 13.0.0 ~5580).
        host_moves_despite_post_failure=since("mitaka"),
        # CR:post_live_migration_at_destination is a cast in
        # 2015.1.0-14.0.0 ('completed' may be written before it), an RPC call from
        # 15.0.0 (CR 15.0.0 ~702; 'completed' after it).
        post_at_destination_is_call=since("ocata"),
        # CM:check_can_live_migrate_source refreshes
        # the connection info in 2015.1.0-13.0.0 (refresh_conn_info=False from 14.0.0).
        source_check_refreshes_connection=not since("newton"),
        # 2014.1 CA rebuild (~2191) and evacuate (~3042) cast CR rebuild_instance
        # straight to the compute: no conductor event.  2014.2 CA calls
        # compute_task_api.rebuild_instance, whose CoM rebuild_instance records
        # 'rebuild_server' (~725).
        rebuild_through_conductor=since("juno"),
        # accuracy §5 (rows 1-2): Kilo evacuations leave no migration row; from 12.0.0 the
        # API creates an 'accepted' evacuation row (CA evacuate 12.0.0 l.3303).
        evacuation_row=since("liberty"),
        # accuracy §5 (row 1): Kilo CM:rebuild_instance saves host = dest before spawning.
        evacuation_sets_host_before_spawn=not since("liberty"),
        # CM:rebuild_instance: 12.0.0-15.0.0 use claims.NopClaim for a forced host (no
        # 'pre-migrating', dest_node NULL); 16.0.0+ always claim.
        forced_evacuation_skips_claim=since("liberty") and not since("pike"),
        # CoM:rebuild_instance: NoValidHost leaves the row 'accepted' in 12.0.0-16.0.0;
        # 17.0.0 sets 'error' and records two conductor faults.
        evacuation_no_valid_host_status="error" if since("queens") else "accepted",
        evacuation_no_valid_host_faults=2 if since("queens") else 1,
        # accuracy §5 (row 3): CM:_destroy_evacuated_instances completes 'accepted' rows in
        # 12.0.0, 'accepted' or 'done' from 13.0.0.
        completes_evacuations=(
            ("accepted", "done") if since("mitaka") else ("accepted",) if since("liberty") else ()
        ),
        # 16.0.0 CM:_destroy_evacuated_instances reads migrations with read_deleted='yes'.
        completes_evacuations_of_deleted=since("pike"),
        # accuracy §6 (row 2): the Kilo conductor removes the shelved_* keys
        # after its cast and Kilo soft-deletes removed sysmeta (2015.1.0 CoM ~793,
        # DB ~2498); from 12.0.0 the compute hard-deletes them on success only.
        conductor_soft_deletes_shelve_keys=not since("liberty"),
        # A failed unshelve's claim abort nulls host/node from 13.0.0
        # (RT:abort_instance_claim -> _unset_instance_host_and_node, ~341-357); Kilo/Liberty keep the failed host.
        unshelve_claim_abort_nulls_host=since("mitaka"),
        # accuracy §1 (operations with no action): 17.0.0 records actions and
        # events for attach/detach volume and interface, snapshot, backup,
        # shelveOffload, and api_* events (lock/unlock, volume-backed snapshot,
        # attach/detach on shelved-offloaded) (commits 1d88440eb4, d0336ee172, ...).
        records_volume_interface_image_lock_actions=since("queens"),
        # accuracy §7 (connector): Queens attaches new volumes through Cinder v3 attachments
        # (attachment_id set, no connector in connection_info, 17.0.0 _volume_attach).
        new_style_volume_attach=since("queens"),
        # CM:trigger_crash_dump and CM:live_migration_force_complete are
        # event-wrapped from 13.0.0, CM:extend_volume from 16.0.0.
        trigger_crash_dump=since("mitaka"),
        extend_volume=since("pike"),
        live_migration_force_complete=since("mitaka"),
        # accuracy §7 (connector): nova/volume/cinder.py:initialize_connection stores the connector from 13.0.0
        # (also 12.0.3; Liberty is modelled as its 12.0.0 tag, without it).
        stores_connector=since("mitaka"),
        # accuracy §3 (last row): DB:instance_destroy soft-deletes instance_system_metadata from
        # 12.0.0, migrations (and BDMs) from 14.0.0.
        destroy_soft_deletes_system_metadata=since("liberty"),
        destroy_soft_deletes_migrations=since("newton"),
        # DB:_archive_deleted_rows_for_table: before 14.0.0 the instance_actions FK makes archiving a
        # deleted instance with actions fail; 14.0.0 archives actions and events too.
        archives_instances_with_actions=since("newton"),
    )


BEHAVIOURS = {name: behaviour(name) for name in NAMES}
