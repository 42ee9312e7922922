#include "store/site.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/error.h"
#include "common/log.h"

struct ims_site {
	char *name;
	rados_t rados;
};

static int set_conf(rados_t r, const char *key, const char *value, const char *site)
{
	int ret = rados_conf_set(r, key, value);
	if (ret < 0)
		return ims_error_set(ret, "site '%s': cannot set '%s' to '%s': %s", site, key, value,
				     ims_strerror(ret));
	return 0;
}

int ims_site_connect(ims_site **out, const ims_site_opts *opts)
{
	ims_site *site = NULL;
	char user[128], num[32];
	const char *name;
	uint64_t mon_timeout, osd_timeout;
	int r;

	if (!out || !opts || opts->version != IMS_SITE_OPTS_VERSION || !opts->ceph_conf)
		return ims_error_set(-EINVAL, "site options are incomplete");
	name = opts->name ? opts->name : "?";
	mon_timeout = opts->mon_timeout ? opts->mon_timeout : 10;
	osd_timeout = opts->osd_timeout ? opts->osd_timeout : 30;

	/* librados reports a missing conf file as -ENOENT from deep inside; say which file. */
	if (access(opts->ceph_conf, R_OK) < 0)
		return ims_error_set(-errno, "site '%s': cannot read ceph.conf '%s': %s", name,
				     opts->ceph_conf, ims_strerror(errno));
	if (opts->keyring && access(opts->keyring, R_OK) < 0)
		return ims_error_set(-errno, "site '%s': cannot read keyring '%s': %s", name,
				     opts->keyring, ims_strerror(errno));

	site = calloc(1, sizeof(*site));
	if (!site || !(site->name = strdup(name))) {
		r = -ENOMEM;
		goto out;
	}
	snprintf(user, sizeof(user), "client.%s", opts->client_id ? opts->client_id : "admin");
	r = rados_create2(&site->rados, "ceph", user, 0);
	if (r < 0) {
		site->rados = NULL;
		ims_error_set(r, "site '%s': cannot create a cluster handle for '%s': %s", name, user,
			      ims_strerror(r));
		goto out;
	}
	r = rados_conf_read_file(site->rados, opts->ceph_conf);
	if (r < 0) {
		ims_error_set(r, "site '%s': cannot parse ceph.conf '%s': %s", name, opts->ceph_conf,
			      ims_strerror(r));
		goto out;
	}
	if (opts->keyring && (r = set_conf(site->rados, "keyring", opts->keyring, name)) < 0)
		goto out;
	snprintf(num, sizeof(num), "%llu", (unsigned long long)mon_timeout);
	if ((r = set_conf(site->rados, "client_mount_timeout", num, name)) < 0 ||
	    (r = set_conf(site->rados, "rados_mon_op_timeout", num, name)) < 0)
		goto out;
	snprintf(num, sizeof(num), "%llu", (unsigned long long)osd_timeout);
	if ((r = set_conf(site->rados, "rados_osd_op_timeout", num, name)) < 0)
		goto out;
	/* Our own messages say what failed; librados' stderr chatter would only repeat it. */
	if ((r = set_conf(site->rados, "log_to_stderr", "false", name)) < 0 ||
	    (r = set_conf(site->rados, "err_to_stderr", "false", name)) < 0)
		goto out;
	/* imgstore copies in bulk with its own bounded buffers: librbd's writeback cache (32 MiB
	 * per open image) would only add a copy and memory. */
	if ((r = set_conf(site->rados, "rbd_cache", "false", name)) < 0)
		goto out;
	/* Clones are format 2 (no snapshot protection) whatever the cluster's default. */
	if ((r = set_conf(site->rados, "rbd_default_clone_format", "2", name)) < 0)
		goto out;

	r = rados_connect(site->rados);
	if (r < 0) {
		if (r == -ETIMEDOUT || r == -EINTR)
			ims_error_set(-ETIMEDOUT, "site '%s': the monitors did not answer within %llus (%s)",
				      name, (unsigned long long)mon_timeout, opts->ceph_conf);
		else
			ims_error_set(r, "site '%s': cannot connect as '%s': %s", name, user,
				      ims_strerror(r));
		if (r == -EINTR)
			r = -ETIMEDOUT;
		goto out;
	}
	ims_log_debug("connected to site '%s' (%s) as %s", name, opts->ceph_conf, user);
	*out = site;
	site = NULL;
	r = 0;
out:
	ims_site_close(site);
	return r;
}

void ims_site_close(ims_site *site)
{
	if (!site)
		return;
	if (site->rados)
		rados_shutdown(site->rados);
	free(site->name);
	free(site);
}

const char *ims_site_name(const ims_site *site)
{
	return site->name;
}

rados_t ims_site_rados(ims_site *site)
{
	return site->rados;
}

int ims_site_ioctx(ims_site *site, const char *pool, rados_ioctx_t *out)
{
	int r = rados_ioctx_create(site->rados, pool, out);
	if (r == -ENOENT)
		return ims_error_set(r, "no pool '%s' on site '%s'", pool, site->name);
	if (r < 0)
		return ims_error_set(r, "cannot open pool '%s' on site '%s': %s", pool, site->name,
				     ims_strerror(r));
	return 0;
}

int ims_site_fsid(ims_site *site, char *buf, unsigned len)
{
	int r = rados_cluster_fsid(site->rados, buf, len);
	return r < 0 ? ims_error_set(r, "site '%s': cannot read the fsid", site->name) : 0;
}

int ims_site_mon_addrs(ims_site *site, char *buf, unsigned len)
{
	const char *cmd[] = { "{\"prefix\": \"mon dump\", \"format\": \"json\"}" };
	char *outbuf = NULL, *outs = NULL;
	size_t outlen = 0, outslen = 0;
	int r;

	r = rados_mon_command(site->rados, cmd, 1, "", 0, &outbuf, &outlen, &outs, &outslen);
	if (r < 0) {
		ims_error_set(r, "site '%s': 'mon dump' failed: %s", site->name, ims_strerror(r));
		goto out;
	}
	/* The reply is not NUL-terminated. */
	char *text = strndup(outbuf ? outbuf : "", outlen);
	if (!text) {
		r = -ENOMEM;
		goto out;
	}
	json_object *root = json_tokener_parse(text), *mons;
	free(text);
	size_t used = 0;
	buf[0] = '\0';
	if (root && json_object_object_get_ex(root, "mons", &mons) &&
	    json_object_is_type(mons, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(mons); i++) {
			json_object *mon = json_object_array_get_idx(mons, i), *addrs, *vec;
			if (!json_object_object_get_ex(mon, "public_addrs", &addrs) ||
			    !json_object_object_get_ex(addrs, "addrvec", &vec))
				continue;
			for (size_t j = 0; j < json_object_array_length(vec); j++) {
				json_object *a = json_object_array_get_idx(vec, j), *type, *addr;
				if (!json_object_object_get_ex(a, "type", &type) ||
				    !json_object_object_get_ex(a, "addr", &addr) ||
				    strcmp(json_object_get_string(type), "v2") != 0)
					continue;
				int n = snprintf(buf + used, len - used, "%s%s", used ? "," : "",
						 json_object_get_string(addr));
				if (n < 0 || (size_t)n >= len - used) {
					json_object_put(root);
					r = ims_error_set(-ERANGE, "site '%s': monitor list too long", site->name);
					goto out;
				}
				used += (size_t)n;
			}
		}
	}
	json_object_put(root);
	r = used ? 0 : ims_error_set(-ENOENT, "site '%s': no v2 monitor address in the monmap", site->name);
out:
	rados_buffer_free(outbuf);
	rados_buffer_free(outs);
	return r;
}
