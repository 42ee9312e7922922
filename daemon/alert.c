#include "daemon/alert.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "common/threads.h"

#define ATTEMPTS       5
#define FIRST_DELAY_MS 1000
#define QUEUE_MAX      1000 /* beyond, the oldest alert goes: a receiver down for long gets the news */

typedef struct item {
	char *body;
	char what[700]; /* for the log: "rpo_violation of 'rbd/x' to site 'b'" */
	struct item *next;
} item;

struct ims_alert {
	char *url;
	char site[64];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	item *head, *tail;
	size_t n;
	bool stopping;
	ims_threads thread; /* the sender */
};

static const char *event_name(ims_repl_event_kind k)
{
	switch (k) {
	case IMS_REPL_EVENT_RPO_VIOLATION: return "rpo_violation";
	case IMS_REPL_EVENT_RPO_RECOVERED: return "rpo_recovered";
	case IMS_REPL_EVENT_VERIFY_MISMATCH: return "verify_mismatch";
	}
	return "unknown";
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
	(void)p;
	(void)ctx;
	return size * n;
}

/* One POST: 0 for a 2xx answer, else -EIO with why in @p why. */
static int post(ims_alert *a, const char *body, char *why, size_t len)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	long code = 0;
	int r = -EIO;
	if (!c) {
		snprintf(why, len, "cannot start a curl handle");
		return -ENOMEM;
	}
	h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, a->url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "imgstored-alert");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	CURLcode cr = curl_easy_perform(c);
	if (cr != CURLE_OK) {
		snprintf(why, len, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cr));
	} else {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 200 && code < 300)
			r = 0;
		else
			snprintf(why, len, "HTTP %ld", code);
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return r;
}

/* Wait @p ms or until stopping; true if stopping. Called with the lock held. */
static bool wait_locked(ims_alert *a, unsigned ms)
{
	struct timespec until;
	ims_clock_after_ms(&until, ms);
	while (!a->stopping && pthread_cond_timedwait(&a->cond, &a->lock, &until) != ETIMEDOUT)
		;
	return a->stopping;
}

static void *sender(void *arg)
{
	ims_alert *a = arg;
	pthread_mutex_lock(&a->lock);
	for (;;) {
		while (!a->stopping && !a->head)
			pthread_cond_wait(&a->cond, &a->lock);
		if (a->stopping)
			break;
		item *it = a->head;
		a->head = it->next;
		if (!a->head)
			a->tail = NULL;
		a->n--;
		bool sent = false;
		unsigned delay = FIRST_DELAY_MS, attempt;
		char why[CURL_ERROR_SIZE + 32] = "";
		for (attempt = 1; attempt <= ATTEMPTS; attempt++) {
			pthread_mutex_unlock(&a->lock);
			sent = post(a, it->body, why, sizeof(why)) == 0;
			pthread_mutex_lock(&a->lock);
			if (sent || attempt == ATTEMPTS)
				break;
			ims_log_debug(
				"alert webhook: %s: attempt %u failed (%s); retrying in %u ms",
				it->what, attempt, why, delay);
			if (wait_locked(a, delay))
				break;
			delay *= 2;
		}
		if (sent)
			ims_log_info("alert webhook: sent %s (attempt %u)", it->what, attempt);
		else
			ims_log_error(
				"alert webhook: %s not delivered to '%s' after %u attempts: %s",
				it->what, a->url, attempt > ATTEMPTS ? ATTEMPTS : attempt, why);
		free(it->body);
		free(it);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

void ims_alert_event(void *ctx, const ims_repl_event *ev)
{
	ims_alert *a = ctx;
	char image[600], when[40];
	time_t secs = (time_t)(ev->unix_ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03dZ",
		 (int)(ev->unix_ms % 1000));
	snprintf(image, sizeof(image), "%s/%s", ev->pool, ev->image);

	json_object *o = json_object_new_object();
	if (!o)
		return;
	json_object_object_add(o, "event", json_object_new_string(event_name(ev->kind)));
	json_object_object_add(o, "image", json_object_new_string(image));
	json_object_object_add(o, "target", json_object_new_string(ev->target));
	json_object_object_add(o, "site", json_object_new_string(a->site));
	json_object_object_add(o, "rpo_seconds", json_object_new_int64(ev->rpo_seconds));
	if (ev->lag_seconds >= 0)
		json_object_object_add(o, "lag_seconds", json_object_new_double(ev->lag_seconds));
	json_object_object_add(o, "time", json_object_new_string(when));
	json_object_object_add(o, "detail", json_object_new_string(ev->detail ? ev->detail : ""));
	item *it = calloc(1, sizeof(*it));
	if (it)
		it->body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	if (!it || !it->body) {
		free(it);
		return;
	}
	snprintf(it->what, sizeof(it->what), "%s of '%s' to site '%s'", event_name(ev->kind), image,
		 ev->target);

	pthread_mutex_lock(&a->lock);
	if (a->n >= QUEUE_MAX) {
		item *old = a->head;
		a->head = old->next;
		a->n--;
		ims_log_warning("alert webhook: queue full, dropped %s", old->what);
		free(old->body);
		free(old);
	}
	if (a->tail)
		a->tail->next = it;
	else
		a->head = it;
	a->tail = it;
	a->n++;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

int ims_alert_start(ims_alert **out, const char *url, const char *site)
{
	ims_alert *a = calloc(1, sizeof(*a));
	if (!a || !(a->url = strdup(url))) {
		free(a);
		return -ENOMEM;
	}
	snprintf(a->site, sizeof(a->site), "%s", site);
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int r = ims_threads_start(&a->thread, 1, sender, a, "the alert webhook's thread");
	if (r < 0) {
		ims_alert_stop(a);
		return r;
	}
	*out = a;
	return 0;
}

void ims_alert_stop(ims_alert *a)
{
	if (!a)
		return;
	ims_threads_stop(&a->thread, &a->lock, &a->cond, &a->stopping);
	while (a->head) {
		item *n = a->head->next;
		ims_log_warning("alert webhook: stopping; %s not sent", a->head->what);
		free(a->head->body);
		free(a->head);
		a->head = n;
	}
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	free(a->url);
	free(a);
}
