/* chain_state.h - target states and the CRAQ chain state machine.
 *
 * A storage target reports a LOCAL state in its heartbeats; mgmtd derives
 * each target's PUBLIC state, which clients and storage services obey, from
 * the previous public states and the latest local reports. The derivation is
 * one pure function, chain_transition(), run whenever a report or a node's
 * liveness changes. Its output order defines the chain: the first SERVING
 * target is the head, the last SERVING target the tail, and writes travel
 * head -> ... -> tail -> the SYNCING target, if any.
 *
 * Local states (reported by the storage service):
 *   UPTODATE  holds every committed write of its chain (set after it was
 *             SERVING, or when its predecessor finished syncing it)
 *   ONLINE    running, contents not known to be current (just started)
 *   OFFLINE   not serving: stopped, fenced, or its disk failed
 * A target on a node whose heartbeat lease lapsed counts as OFFLINE ("down")
 * whatever it last reported; ONLINE and UPTODATE are "up".
 *
 * Public states (decided by mgmtd):
 *   SERVING  reads yes, writes yes: in the chain, holds all committed data
 *   LASTSRV  reads no,  writes no:  down, but was serving when the chain
 *                                    lost its last server: it holds the
 *                                    latest data, so it must serve first
 *   SYNCING  reads no,  writes yes: receives the writes plus a full resync
 *   WAITING  reads no,  writes no:  up, recovery not started yet
 *   OFFLINE  reads no,  writes no:  down, or demoted; contents stale
 *
 * Numbers are rows of the transition table below, which is authoritative.
 *
 *                (4) up, first,                (7) reports UPTODATE
 *                no SERVING up                 (its sync is done)
 *   +---------+ ---------------> +---------+ <-------------------- +---------+
 *   | LASTSRV |                  | SERVING |                       | SYNCING |
 *   +---------+ <--------------- +---------+                       +---------+
 *        |     (3) down, and no       |                             ^   |   |
 *        |     target serves          | (2) down while              |   |   | (9) ONLINE, but
 *        | (6) another target         |     another serves          |   |   |     no SERVING or
 *        |     serves: handled        |                    (11)     |   |   |     no free slot
 *        |     as OFFLINE             v                    ONLINE,  |   |   v
 *        |               +-------------------+ a SERVING, free slot |   | +---------+
 *        +-------------> |      OFFLINE      | ---------------------+   | | WAITING |
 *                        |                   | <----------- (10) down --+ |         |
 *                        |                   | --- (12, 13) up ---------> |         |
 *                        |                   | <---------- (14) down ---- |         |
 *                        +-------------------+                            +---------+
 *                                  WAITING -> SYNCING: (11), as from OFFLINE
 *
 * Transition table. "S" is the set of targets SERVING after this step: the
 * old SERVING targets that are up, plus, when none is, the first up LASTSRV
 * (chain order), plus every SYNCING target reporting UPTODATE. "slot" means
 * no other target got SYNCING in this step (old SYNCING targets first, then
 * the rest, each group in old chain order).
 *
 *   row old      effective local     condition            new
 *    1  SERVING  up                  -                    SERVING
 *    2  SERVING  down                S non-empty          OFFLINE
 *    3  SERVING  down                S empty              LASTSRV
 *    4  LASTSRV  up                  no old SERVING up,   SERVING
 *                                    first such LASTSRV
 *    5  LASTSRV  down                S empty              LASTSRV
 *    6  LASTSRV  any, not row 4      S non-empty          as an OFFLINE target
 *                                                         (rows 11..14)
 *    7  SYNCING  UPTODATE            -                    SERVING
 *    8  SYNCING  ONLINE              S non-empty, slot    SYNCING
 *    9  SYNCING  ONLINE              S empty or no slot   WAITING
 *   10  SYNCING  down                -                    OFFLINE
 *   11  WAITING/ ONLINE              S non-empty, slot    SYNCING
 *       OFFLINE
 *   12  WAITING/ ONLINE              S empty or no slot   WAITING
 *       OFFLINE
 *   13  WAITING/ UPTODATE            -                    WAITING
 *       OFFLINE
 *   14  WAITING/ down                -                    OFFLINE
 *       OFFLINE
 * The output is ordered SERVING, LASTSRV, SYNCING, WAITING, OFFLINE; inside
 * one state by old state (same order) and then old position, so a target
 * promoted from SYNCING becomes the new tail and failed targets move to the
 * end. The chain version is bumped by one exactly when the ordered list of
 * (target, public state) changed. The function is idempotent: fed its own
 * output and the same reports it changes nothing.
 *
 * Where this differs from 3FS's generateNewChain (updateChain.cc), and why:
 *  - 3FS makes only the FIRST of the serving targets that fail together
 *    LASTSRV and the others OFFLINE. All of them hold every acknowledged
 *    write (an ack needs the whole serving chain), so we make all of them
 *    LASTSRV (row 3): whichever comes back first serves. With 3FS, if the
 *    chosen one's disk is gone for good, the chain stays down although an
 *    up-to-date copy is back, and only a manual rotate (risking loss) helps.
 *  - 3FS demotes a LASTSRV to OFFLINE when another target serves, and only
 *    a later step moves it on to WAITING/SYNCING; we apply the OFFLINE rows
 *    in the same step (row 6), one chain version instead of two.
 *  - 3FS keeps every SYNCING target that reports ONLINE while a SERVING one
 *    exists; a corrupt or hand-edited chain with two SYNCING targets would
 *    stay so. We keep the first and make the others WAITING (row 9), so "at
 *    most one SYNCING per chain" holds for any input.
 *  - UPTODATE from a WAITING or OFFLINE target is not trusted (row 13, as
 *    3FS): it may come from a partitioned node that missed writes. The
 *    storage service answers WAITING by dropping its local state to ONLINE,
 *    and only ONLINE enters SYNCING, so UPTODATE while SYNCING always means
 *    "this sync finished".
 * Not covered (operator decisions, done by editing reports or chains):
 * forcing a chain whose every LASTSRV disk is lost back into service, and a
 * LASTSRV whose disk was replaced by an empty one (it would be trusted).
 */
#ifndef CFS_MGMTD_CHAIN_STATE_H
#define CFS_MGMTD_CHAIN_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values are the wire and KV encoding (and match 3FS's bit values). */
enum chain_local_state {
	CHAIN_LS_UPTODATE = 1,
	CHAIN_LS_ONLINE = 2,
	CHAIN_LS_OFFLINE = 4,
};

enum chain_pub_state {
	CHAIN_PS_SERVING = 1,
	CHAIN_PS_LASTSRV = 2,
	CHAIN_PS_SYNCING = 4,
	CHAIN_PS_WAITING = 8,
	CHAIN_PS_OFFLINE = 16,
};

/* Most targets in one chain (replication factor bound). */
#define CHAIN_MAX_TARGETS 16

/* One target of a chain as chain_transition sees it. */
struct chain_member {
	uint32_t target_id;        /* nonzero, unique in the chain */
	enum chain_pub_state ps;   /* public state (input: old; output: new) */
	enum chain_local_state ls; /* latest reported local state (copied through) */
	bool node_alive;           /* the target's node holds a heartbeat lease */
};

/* Computes the next state of a chain.
 * IN: n members in chain order with their old public states, local reports
 * and node liveness; version: the chain's current version.
 * OUT (n members, may not alias IN): the new order and public states; *out_version:
 * version + 1 when anything changed, else version.
 * Returns 1 if the chain changed, 0 if not, -EINVAL for n == 0 or
 * n > CHAIN_MAX_TARGETS, a zero or duplicate target id or an unknown state
 * value, -EOVERFLOW if the version would wrap. Pure; any thread. */
int chain_transition(const struct chain_member *in, size_t n, uint32_t version,
                     struct chain_member *out, uint32_t *out_version);

/* 1 if the state value is one of the enum's, else 0. */
bool chain_local_state_valid(unsigned v);
bool chain_pub_state_valid(unsigned v);
/* Lower-case names ("serving", "uptodate"); "?" for unknown values. Static. */
const char *chain_pub_state_name(unsigned v);
const char *chain_local_state_name(unsigned v);

#endif
