#include "daemon/hosts.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

#include "common/error.h"
#include "common/hash.h"
#include "common/json.h"
#include "common/log.h"
#include "common/spec.h"
#include "daemon/daemon.h"
#include "daemon/kit.h"
#include "imgstore/v1/host.pb-c.h"
#include "replicator/failover.h"
#include "store/crypt.h"
#include "store/image.h"
#include "store/lease.h"

static int64_t now(void)
{
	return (int64_t)time(NULL);
}

static int check_host(const char *h)
{
	if (!ims_host_name_valid(h))
		return ims_error_set(
			-EINVAL, "bad host name '%s': 1 to 127 letters, digits, '.', '-' or '_'",
			h ? h : "");
	return 0;
}

/*
 * A host acts only for itself: a caller of role host may name, in a request, only the host its
 * identity is (its token's name, or the CN of its verified client certificate). An admin acts
 * for any host (an operator releasing a dead host's lease).
 */
static int check_caller(ims_rpc_call *call, const char *host, const char *what)
{
	const char *name = ims_rpc_call_caller(call), *cn = ims_rpc_call_cert_cn(call);
	if (ims_rpc_call_role(call) >= IMS_ROLE_ADMIN || !strcmp(name, host) ||
	    (cn && !strcmp(cn, host)))
		return 0;
	return ims_error_set(-EPERM,
			     "caller '%s' may not %s for host '%s': a host token acts only for the "
			     "host it names "
			     "(its token's name%s%s%s)",
			     name, what, host, cn ? " or its certificate's CN '" : "", cn ? cn : "",
			     cn ? "'" : "");
}

/* Whether hosts may write to this site's copy: not a secondary, not being failed over. */
static int writable_copy(ims_daemon *d, const char *pool, const char *image, ims_repl_side *side)
{
	int r = ims_repl_side_get(side, d->site, pool, image);
	if (r < 0)
		return r;
	if (side->secondary)
		return ims_error_set(
			-EROFS,
			"'%s/%s' on site '%s' is a secondary (its primary: %s); take the lease "
			"on the primary's site",
			pool, image, ims_site_name(d->site),
			side->source[0] ? side->source : "unknown");
	if (strcmp(side->state, "failing-over") == 0)
		return ims_error_set(
			-EAGAIN, "'%s/%s' is being failed over to another site; no new leases here",
			pool, image);
	return 0;
}

int ims_hosts_image_leased(char *host, size_t len, ims_daemon *d, const char *pool,
			   const char *image)
{
	return ims_lease_held(host, len, d->site, d->pool, pool, image);
}

int ims_hosts_break_leases(unsigned *broken, ims_daemon *d, const char *pool, const char *image)
{
	return ims_lease_break(broken, d->site, d->pool, pool, image);
}

static Imgstore__V1__Lease *build_lease(ims_rpc_call *call, const ims_lease *l)
{
	Imgstore__V1__Lease *m = ALLOC(call, Imgstore__V1__Lease);
	Imgstore__V1__ImageSpec *s = ALLOC(call, Imgstore__V1__ImageSpec);
	if (!m || !s)
		return NULL;
	imgstore__v1__lease__init(m);
	imgstore__v1__image_spec__init(s);
	s->pool = DUP(call, l->pool);
	s->image = DUP(call, l->image);
	m->id = DUP(call, l->id);
	m->image = s;
	m->host = DUP(call, l->host);
	m->acquired_unix = l->acquired;
	m->expires_unix = l->expires;
	m->generation = l->generation;
	return m;
}

/* ---------------------------------------------------------------------------------------- */
/* handlers */

static int ims_h_register_host(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			       ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__RegisterHostRequest *q = (const void *)req;
	int r;
	if ((r = check_host(q->name)) < 0)
		return r;
	ims_rpc_call_set_target(call, q->name);
	if ((r = check_caller(call, q->name, "register")) < 0 ||
	    (r = ims_host_register(d->site, d->pool, q->name, q->address,
				   ims_rpc_call_caller(call))) < 0)
		return r;
	Imgstore__V1__Host *m = ALLOC(call, Imgstore__V1__Host);
	if (!m)
		return -ENOMEM;
	imgstore__v1__host__init(m);
	m->name = DUP(call, q->name);
	m->address = DUP(call, q->address);
	m->registered_unix = now();
	m->last_seen_unix = m->registered_unix;
	*resp = &m->base;
	return 0;
}

static int ims_h_acquire_lease(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			       ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__AcquireLeaseRequest *q = (const void *)req;
	ims_spec s;
	ims_repl_side side;
	ims_lease l;
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0 ||
	    (r = check_host(q->host)) < 0 || (r = check_caller(call, q->host, "take a lease")) < 0)
		return r;
	if ((r = ims_daemon_require_image(d, s.pool, s.image)) < 0 ||
	    (r = writable_copy(d, s.pool, s.image, &side)) < 0 ||
	    (r = ims_lease_acquire(&l, d->site, d->pool, s.pool, s.image, q->host,
				   ims_lease_ttl(q->ttl_seconds), side.generation)) < 0)
		return r;
	Imgstore__V1__Lease *m = build_lease(call, &l);
	if (!m)
		return -ENOMEM;
	*resp = &m->base;
	return 0;
}

typedef struct {
	ims_daemon *d;
	ims_rpc_call *call;
} change_ctx;

/* Under the leases' lock: the caller acts for the lease's host; a renewal of a lease whose
 * image failed over since it was granted is fenced (-ESTALE: the record goes). */
static int may_change(void *ctx, const ims_lease *l, bool renew)
{
	change_ctx *c = ctx;
	int r = check_caller(c->call, l->host, renew ? "renew a lease" : "release a lease");
	if (r < 0 || !renew)
		return r;
	ims_repl_side side;
	if (ims_repl_side_get(&side, c->d->site, l->pool, l->image) == 0 &&
	    (side.secondary || side.generation != l->generation))
		return ims_error_set(-ESTALE,
				     "lease '%s' is stale: it was granted at generation %" PRIu64
				     " and '%s/%s' is now at "
				     "generation %" PRIu64
				     "%s; stop writing and take a new lease on its primary",
				     l->id, l->generation, l->pool, l->image, side.generation,
				     side.secondary ? " as a secondary here" : "");
	return 0;
}

/* Renew (ttl > 0) or release (ttl == 0) the lease @p id. */
static int change_lease(ims_daemon *d, ims_rpc_call *call, const char *id, unsigned ttl,
			ims_lease *out)
{
	change_ctx c = {d, call};
	ims_rpc_call_set_target(call, id);
	return ims_lease_change(out, d->site, d->pool, id, ttl, may_change, &c);
}

static int ims_h_renew_lease(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage **resp)
{
	const Imgstore__V1__RenewLeaseRequest *q = (const void *)req;
	ims_lease l;
	int r = change_lease(APP(app), call, q->lease_id, ims_lease_ttl(q->ttl_seconds), &l);
	if (r == -EKEYREVOKED) { /* a failover broke the lease: its host is fenced */
		ims_rpc_call_set_reason(call, IMS_RPC_REASON_FENCED);
		return -ESTALE;
	}
	if (r < 0)
		return r;
	Imgstore__V1__Lease *m = build_lease(call, &l);
	if (!m)
		return -ENOMEM;
	*resp = &m->base;
	return 0;
}

static int ims_h_release_lease(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			       ProtobufCMessage **resp)
{
	const Imgstore__V1__ReleaseLeaseRequest *q = (const void *)req;
	ims_lease l;
	int r = change_lease(APP(app), call, q->lease_id, 0, &l);
	if (r < 0)
		return r;
	return ims_kit_reply_empty(call, &imgstore__v1__release_lease_response__descriptor, resp);
}

static int ims_h_list_leases(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__ListLeasesRequest *q = (const void *)req;
	ims_lease *list = NULL;
	size_t n = 0;
	ims_spec s;
	bool one = q->image && q->image->image && q->image->image[0];
	int r;
	if ((one && (r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0) ||
	    (r = ims_lease_list(&list, &n, d->site, d->pool)) < 0)
		return r;
	Imgstore__V1__ListLeasesResponse *m = ALLOC(call, Imgstore__V1__ListLeasesResponse);
	r = -ENOMEM;
	if (!m)
		goto out;
	imgstore__v1__list_leases_response__init(m);
	if (n && !(m->leases = ims_rpc_call_alloc(call, n * sizeof(*m->leases))))
		goto out;
	int64_t t = now();
	for (size_t i = 0; i < n; i++) {
		if (list[i].expires <= t)
			continue;
		if (one && (strcmp(list[i].pool, s.pool) || strcmp(list[i].image, s.image)))
			continue;
		if (!(m->leases[m->n_leases] = build_lease(call, &list[i])))
			goto out;
		/* a lease id is what renews and releases: not for readers */
		if (ims_rpc_call_role(call) < IMS_ROLE_HOST)
			m->leases[m->n_leases]->id = DUP(call, "");
		m->n_leases++;
	}
	*resp = &m->base;
	r = 0;
out:
	free(list);
	return r;
}

static void xml_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '\'': fputs("&apos;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
	}
}

char *ims_libvirt_disk_xml(const char *pool, const char *image, const char *client_id,
			   const char *secret_uuid, const char *const *monitors, size_t nmonitors,
			   const char *luks_uuid)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	fputs("<disk type='network' device='disk'>\n", f);
	fputs("  <driver name='qemu' type='raw' cache='none' discard='unmap'/>\n", f);
	fputs("  <auth username='", f);
	xml_escape(f, client_id);
	fputs("'>\n    <secret type='ceph' uuid='", f);
	xml_escape(f, secret_uuid && secret_uuid[0] ? secret_uuid : "SECRET-UUID");
	fputs("'/>\n  </auth>\n  <source protocol='rbd' name='", f);
	xml_escape(f, pool);
	fputc('/', f);
	xml_escape(f, image);
	fputs("'>\n", f);
	for (size_t i = 0; i < nmonitors; i++) {
		const char *m = monitors[i], *colon = strrchr(m, ':');
		fputs("    <host name='", f);
		if (colon) {
			char host[128];
			snprintf(host, sizeof(host), "%.*s", (int)(colon - m), m);
			xml_escape(f, host);
			fputs("' port='", f);
			xml_escape(f, colon + 1);
		} else {
			xml_escape(f, m);
		}
		fputs("'/>\n", f);
	}
	if (luks_uuid && luks_uuid[0]) {
		fputs("    <encryption format='luks2' engine='librbd'>\n"
		      "      <secret type='passphrase' uuid='",
		      f);
		xml_escape(f, luks_uuid);
		fputs("'/>\n    </encryption>\n", f);
	}
	fputs("  </source>\n  <target dev='vda' bus='virtio'/>\n</disk>", f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

int ims_daemon_host_identity(char *user, size_t user_len, char *secret, size_t secret_len,
			     ims_daemon *d, const char *host)
{
	int r = -ENOENT;
	pthread_mutex_lock(&d->lock);
	const ims_config_host *h = ims_config_host_entry(d->live ? d->live : d->cfg, host);
	if (h) {
		snprintf(user, user_len, "%s", h->cephx_user);
		snprintf(secret, secret_len, "%s", h->libvirt_secret);
		r = 0;
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

/*
 * The cephx user and libvirt secret a host attaches with: what the request gives, else the
 * [host NAME] section of the host it names (or of the caller's own identity). Never the
 * daemon's own cephx user: a hypervisor must not get the keys of the service.
 */
static int attach_identity(ims_daemon *d, ims_rpc_call *call,
			   const Imgstore__V1__GetAttachInfoRequest *q, const char **host_out,
			   char *user, size_t ulen, char *secret, size_t slen)
{
	const char *host = NULL;
	int r;
	*host_out = NULL;
	if (q->host && q->host[0]) {
		if ((r = check_host(q->host)) < 0 ||
		    (r = check_caller(call, q->host, "ask attach-info")) < 0)
			return r;
		host = q->host;
	} else if (ims_rpc_call_role(call) == IMS_ROLE_HOST) {
		/* a host asks for itself: its certificate's CN when it has one configured */
		const char *cn = ims_rpc_call_cert_cn(call), *name = ims_rpc_call_caller(call);
		char u[8], sct[8];
		host = cn && ims_daemon_host_identity(u, sizeof(u), sct, sizeof(sct), d, cn) == 0
			       ? cn
			       : name;
	}
	bool have_user = q->client_id && q->client_id[0],
	     have_secret = q->secret_uuid && q->secret_uuid[0];
	if (have_user && !ims_host_name_valid(q->client_id))
		return ims_error_set(-EINVAL, "bad cephx user '%s'", q->client_id);
	if (have_secret && !ims_uuid_valid(q->secret_uuid))
		return ims_error_set(-EINVAL, "bad libvirt secret '%s': expected a UUID",
				     q->secret_uuid);
	if (!have_user || !have_secret) {
		if (!host)
			return ims_error_set(
				-EBUSY,
				"attach-info needs a host: name it (--host NAME, a [host NAME] of "
				"the "
				"daemon's configuration) or give --client-id and --secret-uuid");
		if (ims_daemon_host_identity(user, ulen, secret, slen, d, host) < 0)
			return ims_error_set(-EBUSY,
					     "no cephx user and libvirt secret are known for host "
					     "'%s': add a [host %s] "
					     "section with cephx_user and libvirt_secret to the "
					     "daemon's configuration "
					     "(then SIGHUP), or give --client-id and --secret-uuid",
					     host, host);
		*host_out = host;
	}
	if (have_user)
		snprintf(user, ulen, "%s", q->client_id);
	if (have_secret)
		snprintf(secret, slen, "%s", q->secret_uuid);
	return 0;
}

static int ims_h_get_attach_info(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
				 ProtobufCMessage **resp)
{
	ims_daemon *d = APP(app);
	const Imgstore__V1__GetAttachInfoRequest *q = (const void *)req;
	ims_spec s;
	char addrs[1024], fsid[64], user[128] = "", secret[64] = "";
	int r;
	if ((r = ims_kit_spec(&s, d, call, q->image, false, false)) < 0)
		return r;
	const char *host;
	if ((r = attach_identity(d, call, q, &host, user, sizeof(user), secret, sizeof(secret))) <
	    0)
		return r;
	if ((r = ims_daemon_require_image(d, s.pool, s.image)) < 0)
		return r;
	char luks_pass[IMS_CRYPT_PASS_LEN + 1], luks_uuid[37];
	if ((r = ims_image_host_secret(luks_pass, luks_uuid, d->site, s.pool, s.image)) < 0)
		return r;
	if ((r = ims_site_mon_addrs(addrs, sizeof(addrs), d->site)) < 0 ||
	    (r = ims_site_fsid(fsid, sizeof(fsid), d->site)) < 0)
		return r;
	const char *client = user;
	Imgstore__V1__GetAttachInfoResponse *m = ALLOC(call, Imgstore__V1__GetAttachInfoResponse);
	if (!m)
		return -ENOMEM;
	imgstore__v1__get_attach_info_response__init(m);
	size_t nmon = 1;
	for (const char *p = addrs; *p; p++)
		nmon += *p == ',';
	m->monitors = ims_rpc_call_alloc(call, nmon * sizeof(*m->monitors));
	if (!m->monitors)
		return -ENOMEM;
	char *save = NULL;
	for (char *tok = strtok_r(addrs, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		m->monitors[m->n_monitors++] = DUP(call, tok);
	m->pool = DUP(call, s.pool);
	m->image = DUP(call, s.image);
	m->client_id = DUP(call, client);
	m->cluster_fsid = DUP(call, fsid);
	m->site = DUP(call, ims_site_name(d->site));
	m->secret_uuid = DUP(call, secret);
	m->host = DUP(call, host ? host : "");
	if (luks_uuid[0]) {
		m->encryption = DUP(call, "luks2");
		m->luks_secret_uuid = DUP(call, luks_uuid);
		m->luks_passphrase = DUP(call, luks_pass);
		explicit_bzero(luks_pass, sizeof(luks_pass));
	}
	char *xml =
		ims_libvirt_disk_xml(s.pool, s.image, client, secret,
				     (const char *const *)m->monitors, m->n_monitors, luks_uuid);
	if (!xml)
		return -ENOMEM;
	m->libvirt_disk_xml = DUP(call, xml);
	free(xml);
	*resp = &m->base;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */

static const ims_rpc_method methods[] = {
	M("HostService", "RegisterHost", register_host_request, host, HOST, true,
	  ims_h_register_host),
	M("HostService", "AcquireLease", acquire_lease_request, lease, HOST, true,
	  ims_h_acquire_lease),
	M("HostService", "RenewLease", renew_lease_request, lease, HOST, false, ims_h_renew_lease),
	M("HostService", "ReleaseLease", release_lease_request, release_lease_response, HOST, true,
	  ims_h_release_lease),
	M("HostService", "ListLeases", list_leases_request, list_leases_response, READER, false,
	  ims_h_list_leases),
	M("HostService", "GetAttachInfo", get_attach_info_request, get_attach_info_response, HOST,
	  false, ims_h_get_attach_info),
};

IMS_DAEMON_SERVICE(ims_host_service, methods);
