/*
 * cli/examples.c: the examples of `imgstore NOUN VERB --help` and of imgstore(1).
 *
 * Each one is a command that runs as written against site dc1 (https://imgstore.dc1:7443),
 * whose peer is dc2, whose S3 target is cold and whose configuration has a [host hv1], in
 * this order: tests/integration/test_cli_help_examples.sh takes them from
 * the --help of every verb and runs them one after the other against the sandbox (the names
 * of sites, servers and ids it fills in are listed there). So an example may use only what an
 * example before it made (a verb's examples come in the order of the verbs' tables, nouns in
 * the order of `imgstore --help`), and must leave what a later one needs: the verbs that undo
 * have examples only where that does not get in the way (none for group repl disable, which
 * comes before group repl sync, nor tier policy rm, before tier policy run). image rename has
 * none either: the test gives the names of a run a suffix of its own where it sees POOL/NAME,
 * and rename's NEWNAME has no pool.
 */
#include "cli/cli.h"

const ims_cli_example ims_cli__examples[] = {
	/* image */
	{"image", "create", "an empty 20 GiB disk", "imgstore image create rbd/db1 --size 20G"},
	{"image", "create", "the disks of a mail server (a consistency group: see group add)",
	 "imgstore image create rbd/mail-root --size 8G\n"
	 "imgstore image create rbd/mail-data --size 16G\n"
	 "imgstore image create rbd/mail-spool --size 4G"},
	{"image", "import", "a qcow2 file (the format is found from its bytes)",
	 "imgstore image import debian-12.qcow2 rbd/debian-12"},
	{"image", "import",
	 "a raw file, its bytes sent by the CLI; print the operation id and return at once",
	 "imgstore image import old-vm.raw rbd/old-vm --format raw --upload --no-wait"},
	{"image", "import",
	 "a LUKS-encrypted qcow2 made by qemu-img, its passphrase in a file; stored decrypted "
	 "(add --encryption luks2 to keep it encrypted at rest with imgstore's keys)",
	 "imgstore image import vault.luks.qcow2 rbd/vault --passphrase-file vault.pass"},
	{"image", "export", "to a sparse raw file",
	 "imgstore image export rbd/debian-12 debian-12.raw"},
	{"image", "export", "to a qcow2 file",
	 "imgstore image export rbd/debian-12 debian-12-backup.qcow2 --format qcow2"},
	{"image", "clone", "a golden image: snapshot the template once, then clone it for each VM",
	 "imgstore snap create rbd/debian-12@base\n"
	 "imgstore image clone rbd/debian-12@base rbd/web1\n"
	 "imgstore image clone rbd/debian-12@base rbd/web2"},
	{"image", "ls", "the images of pool rbd", "imgstore image ls rbd"},
	{"image", "ls", "the same as JSON, for scripts", "imgstore --format json image ls rbd"},
	{"image", "info", "size, parent, snapshots and tags of one image",
	 "imgstore image info rbd/web1"},
	{"image", "resize", "grow a disk to 30 GiB", "imgstore image resize rbd/db1 --size 30G"},
	{"image", "rm", "to the RBD trash, where it stays 24 hours", "imgstore image rm rbd/web2"},
	{"image", "flatten", "detach a clone from its template", "imgstore image flatten rbd/web1"},
	{"image", "tag", "set two tags", "imgstore image tag rbd/web1 os=debian-12 owner=web-team"},
	{"image", "untag", "remove one", "imgstore image untag rbd/web1 owner"},
	{"image", "attach-info",
	 "the <disk> element of a libvirt domain for host hv1: its cephx user and libvirt secret "
	 "are those of [host hv1] in the daemon's configuration",
	 "imgstore image attach-info rbd/web1 --host hv1 --format libvirt"},
	{"image", "attach-info", "with a cephx user and a libvirt secret named here",
	 "imgstore image attach-info rbd/web1 --format libvirt --client-id hv1 "
	 "--secret-uuid 5a0c1f5e-2b6d-4c8a-9d3e-7f1a2b3c4d5e"},

	/* snap */
	{"snap", "create", "before an upgrade", "imgstore snap create rbd/web1@before-upgrade"},
	{"snap", "ls", "the snapshots of an image", "imgstore snap ls rbd/web1"},
	{"snap", "rollback", "the upgrade went wrong: back to the snapshot (the VM stopped)",
	 "imgstore snap rollback rbd/web1@before-upgrade"},
	{"snap", "verify", "is the snapshot still what was digested when it was taken?",
	 "imgstore snap verify rbd/web1@before-upgrade"},
	{"snap", "rm", "it went well: drop the snapshot",
	 "imgstore snap rm rbd/web1@before-upgrade"},
	{"snap", "schedule add",
	 "every hour; keep a day of hourly ones, a week of dailies, a month of weeklies",
	 "imgstore snap schedule add rbd/web1 --every 1h --keep hourly=24,daily=7,weekly=4"},
	{"snap", "schedule ls", "the schedules, their last snapshot and error",
	 "imgstore snap schedule ls"},
	{"snap", "schedule rm", "stop it (the snapshots it took stay)",
	 "imgstore snap schedule rm rbd/web1"},

	/* op */
	{"op", "ls", "operations queued or running", "imgstore op ls"},
	{"op", "ls", "the last 20, finished ones too", "imgstore op ls --all --limit 20"},
	{"op", "get", "one operation: state, progress, result",
	 "imgstore op get op-5c1883b7c1ca20b7"},
	{"op", "wait", "wait for one started with --no-wait, at most 10 minutes",
	 "imgstore op wait op-5c1883b7c1ca20b7 --timeout 10m"},
	{"op", "cancel", "stop one (one that already ended is left as it is)",
	 "imgstore op cancel op-5c1883b7c1ca20b7"},

	/* host */
	{"host", "register", "a hypervisor host", "imgstore host register hv1 --address 10.0.0.21"},
	{"host", "lease acquire", "host hv1 is about to start the VM of rbd/web1",
	 "imgstore host lease acquire rbd/web1 --host hv1 --ttl 2m"},
	{"host", "lease renew", "the host renews its lease well before it expires",
	 "imgstore host lease renew lease-01877fd18b27483931fff42a --ttl 2m"},
	{"host", "lease release", "the VM stopped",
	 "imgstore host lease release lease-01877fd18b27483931fff42a"},
	{"host", "lease ls", "every lease in pool rbd", "imgstore host lease ls rbd"},

	/* repl */
	{"repl", "enable", "replicate to site dc2, at most 5 minutes behind",
	 "imgstore repl enable rbd/db1 --to dc2 --rpo 5m"},
	{"repl", "enable", "sync mode: every snap create is sealed on dc2 before it returns",
	 "imgstore repl enable rbd/debian-12 --to dc2 --mode sync"},
	{"repl", "disable", "stop replicating (the copy on dc2 stays)",
	 "imgstore repl disable rbd/debian-12"},
	{"repl", "status", "every replicated image: target, state, lag", "imgstore repl status"},
	{"repl", "status", "one image", "imgstore repl status rbd/db1"},
	{"repl", "sync", "seal the image's state on its one target now",
	 "imgstore repl sync rbd/db1"},
	{"repl", "sync", "an image with several targets: name one (once per target)",
	 "imgstore repl sync rbd/db1 --to dc2"},
	{"repl", "verify", "compare the copy on dc2 with the primary",
	 "imgstore repl verify rbd/db1"},
	{"repl", "failover",
	 "planned, asked of dc1 (the primary's site): hosts get 30 s to release their leases",
	 "imgstore repl failover rbd/db1 --to dc2"},
	{"repl", "failback", "back to dc1, asked of dc2 (the primary now)",
	 "imgstore --server https://imgstore.dc2:7443 repl failback rbd/db1"},
	{"repl", "resync",
	 "asked of the primary when status says split-brain (a forced failover, the old primary's "
	 "site back)",
	 "imgstore repl resync rbd/db1"},

	/* site */
	{"site", "ls", "this site and its peers: health, lag of the replication to them",
	 "imgstore site ls"},
	{"site", "status", "one peer", "imgstore site status dc2"},

	/* tier */
	{"tier", "push", "a snapshot to S3 target cold (the image stays)",
	 "imgstore tier push rbd/debian-12@base --to cold"},
	{"tier", "push", "an idle image (it goes to the RBD trash once pushed)",
	 "imgstore tier push rbd/old-vm --to cold"},
	{"tier", "restore", "bring it back", "imgstore tier restore rbd/old-vm"},
	{"tier", "restore", "a pushed snapshot, as a new image",
	 "imgstore tier restore rbd/debian-12@base --to rbd/debian-12-base"},
	{"tier", "ls", "what the S3 targets hold", "imgstore tier ls"},
	{"tier", "scrub", "check that every chunk the manifests name is there",
	 "imgstore tier scrub --target cold"},
	{"tier", "gc", "remove chunks no manifest names, older than 7 days",
	 "imgstore tier gc --target cold --grace 7d"},
	{"tier", "policy set", "what a policy would push now, without setting it",
	 "imgstore tier policy set rbd --cold-after 90d --to cold --dry-run"},
	{"tier", "policy set", "push the images of pool rbd unused for 90 days to cold",
	 "imgstore tier policy set rbd --cold-after 90d --to cold"},
	{"tier", "policy show", "the policy of pool rbd", "imgstore tier policy show rbd"},
	{"tier", "policy run", "what it would push now", "imgstore tier policy run rbd --dry-run"},

	/* group */
	{"group", "create", "a group for the disks of one VM", "imgstore group create rbd/mail"},
	{"group", "add", "its disks (all of them or none)",
	 "imgstore group add rbd/mail rbd/mail-root rbd/mail-data rbd/mail-spool"},
	{"group", "rm", "take a disk out of the group (the image stays)",
	 "imgstore group rm rbd/mail rbd/mail-spool"},
	{"group", "snap", "every disk at the same point", "imgstore group snap rbd/mail@nightly"},
	{"group", "ls", "the groups of pool rbd", "imgstore group ls rbd"},
	{"group", "show", "images, snapshots, replication", "imgstore group show rbd/mail"},
	{"group", "repl enable", "replicate the group to dc2 with one RPO for all its disks",
	 "imgstore group repl enable rbd/mail --to dc2 --rpo 5m"},
	{"group", "repl sync", "cut the group now and seal it on dc2",
	 "imgstore group repl sync rbd/mail"},
	{"group", "repl status", "its replication", "imgstore group repl status rbd/mail"},
	{"group", "repl failover",
	 "planned failover to dc2, and back (asked of dc2, the primary then)",
	 "imgstore group repl failover rbd/mail --to dc2\n"
	 "imgstore --server https://imgstore.dc2:7443 group repl failover rbd/mail --to dc1"},
	{"group", "repl verify", "compare every disk's copy on dc2 at the newest cut",
	 "imgstore group repl verify rbd/mail"},
	{"group", "repl resync",
	 "asked of the primary when status says split-brain (a forced failover, the old primary's "
	 "site back)",
	 "imgstore group repl resync rbd/mail"},

	/* audit */
	{"audit", "verify", "the audit log of this host's imgstored",
	 "imgstore audit verify /var/log/imgstore/audit.log"},

	/* key */
	{"key", "rewrap",
	 "after a KEK rotation (new kek_file, the old one as kek_previous_file, daemon restarted)",
	 "imgstore key rewrap"},

	{NULL, NULL, NULL, NULL},
};
