/* The command table and the help texts: what `vdisk help` and
 * `vdisk COMMAND --help` print comes from here and only from here, so the
 * help cannot drift from what the parser accepts. */
#include "vdisk/cli/cli.h"

#include <string.h>

#define NAME_RULE "Names: 1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with . or -.\n"
#define SIZE_RULE                                                                        \
	"SIZE: bytes, or a number with K, M, G, T or P (powers of 1024, so 10G is\n"     \
	"10 GiB); a multiple of 4 KiB, from 4 KiB to 1 PiB.\n"
#define WAIT_RULE                                                                        \
	"Without --wait it prints \"job ID started: ...\" and returns at once; follow the\n" \
	"job with: vdisk job show ID. With --wait it waits for the job to end, drawing\n"  \
	"a progress bar when stdout is a terminal, and exits 1 if the job failed or was\n" \
	"cancelled. Ctrl-C stops the waiting, not the job (exit 130).\n"
#define JSON_RULE "--json prints the answer as JSON on stdout and nothing else.\n"

const struct cli_cmd cli_cmds[] = {
	{ "create", "NAME SIZE", "make an empty thin vdisk",
	  "Makes an empty thin vdisk NAME of SIZE bytes; it takes space only as it is\n"
	  "written.\n" SIZE_RULE NAME_RULE,
	  0, 2, 2, cli_cmd_create },
	{ "list", "[--json]", "list the vdisks",
	  "Lists every vdisk: provisioned size, bytes allocated by its own layers, the\n"
	  "snapshot it was cloned from, how many snapshots it has, the depth of its\n"
	  "layer chain and its state.\n" JSON_RULE,
	  OPT_JSON, 0, 0, cli_cmd_list },
	{ "info", "NAME[@SNAP] [--json]", "show one vdisk or snapshot",
	  "Shows a vdisk: provisioned, allocated and unique bytes (what deleting it would\n"
	  "free), parent snapshot, snapshots, chain depth, state and creation time; or,\n"
	  "for NAME@SNAP, a snapshot: size, allocated bytes, clones, creation time.\n" JSON_RULE,
	  OPT_JSON, 1, 1, cli_cmd_info },
	{ "resize", "NAME SIZE [--shrink]", "change the size of a vdisk",
	  "Changes the provisioned size of NAME. Growing is always allowed; shrinking\n"
	  "drops the data past the new end, so it needs --shrink. Snapshots keep their\n"
	  "own size.\n" SIZE_RULE,
	  OPT_SHRINK, 2, 2, cli_cmd_resize },
	{ "delete", "NAME[@SNAP]", "delete a vdisk or a snapshot",
	  "Deletes vdisk NAME with its snapshots, or only snapshot NAME@SNAP. A vdisk\n"
	  "with clones is refused (delete or flatten the clones first). A snapshot with\n"
	  "clones disappears from listings but its blocks stay until its clones no longer\n"
	  "need them; the clones are named. Space is freed in the background by a job.\n",
	  0, 1, 1, cli_cmd_delete },
	{ "snapshot", "NAME SNAP", "take a snapshot (or: NAME@SNAP)",
	  "Freezes the current content of NAME as snapshot SNAP, at once and without\n"
	  "copying. Also accepted: vdisk snapshot NAME@SNAP.\n" NAME_RULE,
	  0, 1, 2, cli_cmd_snapshot },
	{ "snapshots", "NAME [--json]", "list the snapshots of a vdisk",
	  "Lists the snapshots of NAME, oldest first: size, allocated bytes, creation\n"
	  "time and the vdisks cloned from each.\n" JSON_RULE,
	  OPT_JSON, 1, 1, cli_cmd_snapshots },
	{ "rollback", "NAME@SNAP", "go back to a snapshot (or: NAME SNAP)",
	  "Makes NAME read exactly as snapshot SNAP again; what was written since is\n"
	  "lost. The snapshot stays. Refused while NAME is exported. Also accepted:\n"
	  "vdisk rollback NAME SNAP.\n",
	  0, 1, 2, cli_cmd_rollback },
	{ "clone", "NAME@SNAP NEWNAME [--full] [--wait]", "make a new vdisk from a snapshot",
	  "Makes vdisk NEWNAME with the content of snapshot NAME@SNAP. A thin clone\n"
	  "(the default) is made at once and shares the snapshot's blocks. --full copies\n"
	  "every block in a job, so the clone does not depend on the snapshot; NEWNAME\n"
	  "is usable when the job is done. --wait only matters with --full.\n" WAIT_RULE,
	  OPT_FULL | OPT_WAIT, 2, 2, cli_cmd_clone },
	{ "flatten", "NAME [--wait]", "copy shared blocks into a clone",
	  "Copies into NAME the blocks it still reads from the snapshot it was cloned\n"
	  "from, in a job, so that it no longer depends on it.\n" WAIT_RULE,
	  OPT_WAIT, 1, 1, cli_cmd_flatten },
	{ "scrub", "NAME [--wait]", "read every stored block of a vdisk and check it",
	  "Starts a job that reads every block NAME's layers hold (its own and its\n"
	  "snapshots', and those of the vdisk it was cloned from) and checks each\n"
	  "against the checksum written with it, as scrub-class I/O: it takes what\n"
	  "guest I/O leaves. A block that does not read (its data fails its checksum,\n"
	  "or the disk fails the read) is counted and placed, and the scrub goes on.\n"
	  "In a cluster it reads every copy and compares them: a block with a copy\n"
	  "that does not read or differs is written again on every copy; a block\n"
	  "counts as bad only when no copy reads. With --wait, it ends by saying what\n"
	  "it read and which blocks do not read (exit status 1 if any); `vdisk job\n"
	  "show ID` says the same.\n" WAIT_RULE,
	  OPT_WAIT, 1, 1, cli_cmd_scrub },
	{ "import", "FILE NAME [--wait]", "make a vdisk from a file or device",
	  "Makes vdisk NAME holding the content of FILE (its size rounded up to 4 KiB),\n"
	  "copied by a job. blockd reads FILE itself: a relative path is made absolute\n"
	  "here, and FILE must exist and be readable by blockd.\n" WAIT_RULE,
	  OPT_WAIT, 2, 2, cli_cmd_import },
	{ "export", "NAME[@SNAP] FILE [--wait]", "write a vdisk or snapshot to a file",
	  "Writes the content of NAME (or of its snapshot SNAP) into FILE, which must not\n"
	  "exist yet. Blocks never written become holes, so FILE is sparse. blockd\n"
	  "writes FILE itself: a relative path is made absolute here.\n" WAIT_RULE,
	  OPT_WAIT, 2, 2, cli_cmd_export },
	{ "jobs", "[--json]", "list running and recent jobs",
	  "Lists the jobs: running ones and those finished within the last hour, with\n"
	  "their progress.\n" JSON_RULE,
	  OPT_JSON, 0, 0, cli_cmd_jobs },
	{ "job show", "ID [--json]", "show one job",
	  "Shows job ID: type, state, source and target, progress, rate, time left,\n"
	  "start and end times, and its error if it failed.\n" JSON_RULE,
	  OPT_JSON, 1, 1, cli_cmd_job_show },
	{ "job cancel", "ID", "cancel a running job",
	  "Cancels job ID. A cancelled full clone or import leaves no vdisk behind and a\n"
	  "cancelled export removes its file. Jobs that free the space of deleted vdisks\n"
	  "and snapshots cannot be cancelled.\n",
	  0, 1, 1, cli_cmd_job_cancel },
	{ "fsck", "[--json]", "check the catalog against the store",
	  "Checks the vdisk catalog against itself (broken layer chains, missing\n"
	  "parents, vdisks stuck building) and against the store (layers the catalog\n"
	  "does not know: leaked space). Only reads. Exits 0 when clean, 1 after printing\n"
	  "the problems when it found any.\n" JSON_RULE,
	  OPT_JSON, 0, 0, cli_cmd_fsck },
	{ "iscsi list", "[--json]", "list the iSCSI targets",
	  "Lists the iSCSI targets blockd serves: one per vdisk, read-write, named\n"
	  "iqn.2026-11.io.kura:NAME, and one per snapshot, read-only, named\n"
	  "iqn.2026-11.io.kura:NAME:SNAP. ACCESS is rw or ro; SESSIONS counts the\n"
	  "initiators logged in; ACL counts the initiators allowed, or says \"any\" when\n"
	  "the ACL is empty; CHAP is none, one-way or mutual. The first line gives the\n"
	  "portal initiators connect to, or says that iSCSI is off.\n" JSON_RULE
	  "In it \"chap\" is only true or false; vdisk iscsi show tells one-way from\n"
	  "mutual.\n",
	  OPT_JSON, 0, 0, cli_cmd_iscsi_list },
	{ "iscsi show", "NAME[@SNAP] [--json]", "show a target's access and sessions",
	  "Shows the target of vdisk NAME, or of snapshot NAME@SNAP: its iSCSI name,\n"
	  "the portal, who may log in, its ACL, its CHAP user names (never the secrets)\n"
	  "and the sessions logged in to it. An empty ACL means that any initiator that\n"
	  "reaches the portal may log in (knowing the CHAP secret, when CHAP is set).\n"
	  JSON_RULE,
	  OPT_JSON, 1, 1, cli_cmd_iscsi_show },
	{ "iscsi acl", "NAME[@SNAP] add|remove IQN", "allow or disallow an initiator",
	  "Adds initiator IQN to the ACL of the target of NAME (or of snapshot\n"
	  "NAME@SNAP), or removes it. While the ACL is empty any initiator that reaches\n"
	  "the portal may log in; once it holds names, only those initiators may, and\n"
	  "discovery shows the target only to them. Changes apply to the next login:\n"
	  "sessions already logged in stay.\n"
	  "IQN: iqn.YYYY-MM.reverse.domain[:anything] (like iqn.1994-05.com.redhat:host1),\n"
	  "eui. and 16 hex digits, or naa. and 16 or 32 hex digits; written with a-z 0-9\n"
	  ". - : only (iSCSI names ignore case; write them in lower case).\n",
	  0, 3, 3, cli_cmd_iscsi_acl },
	{ "iscsi chap", "NAME[@SNAP] USER SECRET [--mutual USER SECRET] | --clear",
	  "set or clear CHAP for a target",
	  "Makes initiators that log in to the target of NAME (or of snapshot NAME@SNAP)\n"
	  "answer a CHAP challenge as USER with SECRET. With --mutual, an initiator that\n"
	  "asks the target to prove itself too is answered as the second USER with the\n"
	  "second SECRET; initiators that do not ask still log in. Setting CHAP replaces\n"
	  "what was set before; --clear removes it, so that logins need no secret.\n"
	  "Changes apply to the next login: sessions already logged in stay.\n"
	  "User names: 1 to 255 characters. Secrets: 12 to 255 characters (what Windows\n"
	  "and ESXi demand); no control characters; the two secrets must differ.\n"
	  "A SECRET given as - is read from standard input, one line (the first line\n"
	  "for the first -, the next for the second), so that it does not show in the\n"
	  "process list as an argument would; on a terminal it is asked for, without\n"
	  "echo. A SECRET that starts with - goes after --, itself after any option.\n"
	  "blockd keeps secrets in its catalog, since CHAP needs them in clear, and\n"
	  "never shows them.\n",
	  OPT_MUTUAL | OPT_CLEAR, 1, 5, cli_cmd_iscsi_chap },
	{ "iscsi cache", "NAME writeback|writethrough", "set a target's write cache",
	  "Sets the write cache of the target of vdisk NAME (the WCE bit of its caching\n"
	  "mode page). writethrough, the default: every write is durable when it\n"
	  "completes. writeback: a WRITE without FUA completes once it is in the\n"
	  "device's volatile cache, about twice as fast at queue depth 1; a crash of\n"
	  "blockd does not lose it, a power cut of the node may, until the initiator\n"
	  "sends SYNCHRONIZE CACHE (Linux, Windows and QEMU do when a guest flushes;\n"
	  "ESXi does not: keep writethrough for VMFS datastores). blockd makes such\n"
	  "writes durable by itself within a few milliseconds. Applies at once, to\n"
	  "sessions already logged in too; an initiator may change it with MODE SELECT\n"
	  "until the next reset. In a cluster, writes are durable on every replica\n"
	  "whatever this says.\n",
	  0, 2, 2, cli_cmd_iscsi_cache },
	{ "qos show", "NAME [--json]", "show a vdisk's I/O limits and share",
	  "Shows the I/O settings of vdisk NAME: IOPS and bandwidth limits and\n"
	  "reservations (0 means none) and its weight.\n" JSON_RULE,
	  OPT_JSON, 1, 1, cli_cmd_qos_show },
	{ "qos", "NAME [--iops-limit N] [--bw-limit SIZE/s] [--iops-reserve N] "
		 "[--bw-reserve SIZE/s] [--weight W]",
	  "set a vdisk's I/O limits and share",
	  "Sets the I/O settings of vdisk NAME; options not given keep their value, 0\n"
	  "(or none) removes a limit or reservation. They apply at once, to I/O already\n"
	  "waiting too, and survive restarts. With no option it shows the settings.\n"
	  "  --iops-limit N      at most N guest I/Os a second\n"
	  "  --bw-limit SIZE/s   at most SIZE bytes a second (like 200M/s; at least 4K/s)\n"
	  "  --iops-reserve N    N I/Os a second served before any share by weight\n"
	  "  --bw-reserve SIZE/s the same in bytes\n"
	  "  --weight W          share of the disk when vdisks compete, 1 to 10000\n"
	  "                      (default 100: a vdisk of weight 200 gets twice as much)\n"
	  "Limits and reservations count guest I/O (what frontends send); clone, import,\n"
	  "export, flatten and merge work is scheduled by its class and yields to guest\n"
	  "I/O by itself, with nothing to set (docs/qos.md).\n",
	  OPT_VALUES | OPT_JSON, 1, 11, cli_cmd_qos },
	{ "stats", "[NAME] [--json] [--watch]", "I/O rates and latencies per vdisk and class",
	  "Shows, for every vdisk (or only NAME) and each I/O class that has run on it\n"
	  "(guest, clone, rebuild, scrub, merge): I/Os and bytes a second over the last\n"
	  "whole second, and latency percentiles (p50, p99, p99.9, max) of that second,\n"
	  "measured from when blockd received the I/O to its completion, so time spent\n"
	  "waiting for the scheduler counts. The first line is the scheduler's state:\n"
	  "its mode, the guest latency baseline and how much background work may be in\n"
	  "flight. --watch prints again every second until Ctrl-C. " JSON_RULE
	  "The JSON also has totals since blockd started (ops, bytes, lat_total_us).\n",
	  OPT_JSON | OPT_WATCH, 0, 1, cli_cmd_stats },
	{ "cluster init", "--replicas N [--pgs N] [--out-after TIME]",
	  "create the cluster in etcd (once, from any node)",
	  "Creates a new cluster in the etcd that this node's blockd was started with\n"
	  "(blockd --cluster URLS): its id, how many copies of every block it keeps and\n"
	  "its placement groups. Run it once, on any node; the nodes then join on\n"
	  "their own. Fails when etcd already holds a cluster.\n"
	  "  --replicas N       copies of every block, 1 to 3; no two in one fault domain\n"
	  "  --pgs N            placement groups, a power of two (default 256)\n"
	  "  --out-after TIME   how long a node may be gone before its copies are made\n"
	  "                     again elsewhere: 30s, 10m, 1h (default 10m)\n",
	  OPT_VALUES | OPT_JSON, 0, 6, cli_cmd_cluster_init },
	{ "cluster status", "[--json]", "nodes, their state and placement group health",
	  "Shows the cluster this node belongs to: its id, the map's epoch, the map\n"
	  "leader, every node with its state (up; down: its lease lapsed, its copies\n"
	  "are missing; out: gone longer than --out-after; recovering: back, but it\n"
	  "may have missed writes, so it serves none until brought up to date),\n"
	  "address, fault domain, capacity and use, and how many placement groups\n"
	  "have all their replicas up, some not (degraded) or none (the first 64\n"
	  "that are not clean are listed).\n"
	  "\"this node\" says whether the node may acknowledge replicated writes: it\n"
	  "may not once it has failed to renew its etcd lease for 1.3 s, so that a node\n"
	  "cut off from the cluster never acknowledges what the others cannot see.\n"
	  "Once the node has copied data for a resync or rebuild, \"rebuild pacing\"\n"
	  "shows how far its guests' I/O holds that back: their latency against\n"
	  "its idle figure, and the window and rate of the copies it takes and of\n"
	  "the reads it does for other nodes.\n"
	  JSON_RULE,
	  OPT_JSON, 0, 0, cli_cmd_cluster_status },
	{ "cluster out", "NODE [--force] [--json]",
	  "mark a down node out now: its copies are rebuilt elsewhere",
	  "A node whose lease lapsed is down: its groups run on their other replicas\n"
	  "and it catches up if it comes back. Only after --out-after (cluster init)\n"
	  "does it go out, and the nodes that take its places copy its data. When you\n"
	  "know the node is not coming back soon (a host that failed), this makes it\n"
	  "out at once. Run it on any node that is up; it waits (up to 15 s) until\n"
	  "the cluster map shows the node out. Refused for a node that is up or\n"
	  "recovering (stop its blockd first), and for a node that is a member of a\n"
	  "group with no other replica up to take writes from (its copy may be the\n"
	  "newest there is): --force makes it out all the same. A node that comes back\n"
	  "after going out catches up as any returning node does.\n" JSON_RULE,
	  OPT_JSON | OPT_FORCE, 1, 1, cli_cmd_cluster_out },
	{ "cluster remove", "NODE [--json]", "forget a node that is out",
	  "Removes a node that is out from the cluster map, so that status no longer\n"
	  "lists it. It is in no placement group's set by then: nothing moves. Refused\n"
	  "for a node that is up, recovering or down (mark it out first). Should a\n"
	  "removed node register again, it joins as a new node: recovering, brought\n"
	  "up to date before it serves. It waits (up to 15 s) until the cluster map\n"
	  "shows the node gone.\n" JSON_RULE,
	  OPT_JSON, 1, 1, cli_cmd_cluster_remove },
	{ "version", "", "print vdisk's and blockd's versions",
	  "Prints the version of this vdisk command, then asks blockd for its own.\n",
	  0, 0, 0, cli_cmd_version },
};

const size_t cli_ncmds = sizeof(cli_cmds) / sizeof(cli_cmds[0]);
