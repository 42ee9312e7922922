/*
 * cli/wait.c: waiting on long-running operations, with a progress bar on a terminal and
 * plain lines otherwise, and cancelling them on Ctrl-C.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/units.h"

#include "imgstore/v1/operation.pb-c.h"

#define BAR_WIDTH 10

/* Give a cancelled operation this long to stop before giving up on waiting. */
#define CANCEL_GRACE_SECONDS 60.0

static double now(ims_cli *cli)
{
	struct timespec ts;

	if (cli->now)
		return cli->now(cli->now_arg);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool terminal(int state)
{
	return state == IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_SUCCEEDED ||
	       state == IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_FAILED ||
	       state == IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_CANCELLED;
}

static bool interrupted(const ims_cli *cli)
{
	return cli->interrupted && *cli->interrupted;
}

void ims_cli_arm_sigint(ims_cli *cli, bool armed)
{
	if (cli->sigint_armed)
		*cli->sigint_armed = armed;
}

/* ---- progress ---- */

char *ims_cli_format_bar(char *buf, size_t len, uint64_t done, uint64_t total, double rate)
{
	char d[32], t[32], r[40] = "";

	if (rate >= 0) {
		char s[32];
		snprintf(r, sizeof(r), " %s/s", ims_format_size(s, sizeof(s), (uint64_t)rate));
	}
	if (total && done > total)
		done = total;
	ims_format_size(d, sizeof(d), done);
	if (total == 0) {
		snprintf(buf, len, "%s%s", d, r);
		return buf;
	}
	unsigned pct = (unsigned)((long double)done * 100 / total);
	unsigned fill = (unsigned)((long double)done * BAR_WIDTH / total);
	char bar[BAR_WIDTH + 1];
	for (unsigned i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : ' ';
	bar[BAR_WIDTH] = '\0';
	ims_format_size(t, sizeof(t), total);
	snprintf(buf, len, "[%s] %u%% %s/%s%s", bar, pct, d, t, r);
	return buf;
}

char *ims_cli_format_plain(char *buf, size_t len, const char *label, int state, uint64_t done,
			   uint64_t total)
{
	char d[32], t[32];

	if (state == IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_QUEUED)
		snprintf(buf, len, "%s: queued", label);
	else if (total > 0)
		snprintf(buf, len, "%s: %u%% (%s of %s)", label,
			 (unsigned)((long double)(done > total ? total : done) * 100 / total),
			 ims_format_size(d, sizeof(d), done), ims_format_size(t, sizeof(t), total));
	else if (done > 0)
		snprintf(buf, len, "%s: %s", label, ims_format_size(d, sizeof(d), done));
	else
		snprintf(buf, len, "%s: started", label);
	return buf;
}

void ims_cli_progress_init(ims_cli_progress *p, ims_cli *cli, const char *label)
{
	memset(p, 0, sizeof(*p));
	p->cli = cli;
	ims_cli_escape(p->label, sizeof(p->label), label, false);
	p->start = now(cli);
	p->last_sample = -1;
	p->rate = -1;
	p->last_state = -1;
}

static void draw_bar(ims_cli_progress *p, double t)
{
	char line[640];
	size_t n;

	if (p->cur_state == IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_QUEUED)
		snprintf(line, sizeof(line), "%s: queued", p->label);
	else
		ims_cli_format_bar(line, sizeof(line), p->cur_done, p->cur_total, p->rate);
	n = strlen(line);
	/* pad over what a longer previous line left behind */
	fprintf(p->cli->err, "\r%s%*s", line, p->drawn > n ? (int)(p->drawn - n) : 0, "");
	fflush(p->cli->err);
	p->drawn = n;
	p->printed_any = true;
	p->last_print = t;
	p->stale = false;
}

void ims_cli_progress_update(ims_cli_progress *p, int state, uint64_t done, uint64_t total)
{
	ims_cli *cli = p->cli;
	double t = now(cli);
	char line[640];
	bool state_changed = state != p->last_state;

	/* the rate is sampled at most twice a second and smoothed */
	if (p->last_sample < 0 || done < p->last_done) {
		p->last_sample = t;
		p->last_done = done;
	} else if (t - p->last_sample >= 0.5) {
		double inst = (double)(done - p->last_done) / (t - p->last_sample);
		p->rate = p->rate < 0 ? inst : 0.7 * p->rate + 0.3 * inst;
		p->last_sample = t;
		p->last_done = done;
	}
	p->last_state = state;
	p->cur_state = state;
	p->cur_done = done;
	p->cur_total = total;
	p->stale = true;
	if (cli->err_tty) {
		if (state_changed || !p->printed_any || t - p->last_print >= 0.2)
			draw_bar(p, t);
		return;
	}
	if (!state_changed && p->printed_any && t - p->last_print < cli->plain_interval)
		return;
	fprintf(cli->err, "%s\n",
		ims_cli_format_plain(line, sizeof(line), p->label, state, done, total));
	fflush(cli->err);
	p->printed_any = true;
	p->last_print = t;
}

void ims_cli_progress_end(ims_cli_progress *p)
{
	if (p->cli->err_tty && p->printed_any) {
		if (p->stale)
			draw_bar(p, now(p->cli));
		fputc('\n', p->cli->err);
		fflush(p->cli->err);
		/* a bar drawn after this starts a line of its own */
		p->printed_any = false;
	}
	p->drawn = 0;
}

/* ---- waiting ---- */

static void op_label(char *buf, size_t len, const Imgstore__V1__Operation *op)
{
	snprintf(buf, len, "%s %s", op->kind && *op->kind ? op->kind : "operation",
		 op->target && *op->target ? op->target : op->id);
}

int ims_cli_wait(ims_cli *cli, Imgstore__V1__Operation **opp, uint64_t timeout_s)
{
	ims_cli_wait_opts w = {.timeout_s = timeout_s};
	return ims_cli_wait_opts_run(cli, opp, &w);
}

int ims_cli_wait_opts_run(ims_cli *cli, Imgstore__V1__Operation **opp, const ims_cli_wait_opts *w)
{
	Imgstore__V1__Operation *op = *opp, *next;
	ims_cli_progress prog;
	char label[512], esc[1024], dur[32];
	double t0 = now(cli), cancel_at = 0, decided_at = -1;
	uint64_t timeout_s = w->timeout_s;
	bool cancel_sent = false;
	int r = 0;

	op_label(label, sizeof(label), op);
	ims_cli_progress_init(&prog, cli, label);
	ims_cli_arm_sigint(cli, true);
	while (!terminal(op->state)) {
		ims_cli_progress_update(&prog, op->state, op->bytes_done, op->bytes_total);
		if (w->until_decided && op->decided && !cancel_sent) {
			/* its outcome is known: the rest gets a moment to end as well (Ctrl-C
			 * meanwhile ends the wait, it cancels nothing: what is left cannot stop) */
			if (interrupted(cli))
				break;
			if (decided_at < 0)
				decided_at = now(cli);
			else if (now(cli) - decided_at >= IMS_CLI_DECIDED_GRACE_S)
				break;
		}
		if (interrupted(cli) && !cancel_sent) {
			Imgstore__V1__CancelOperationRequest creq =
				IMGSTORE__V1__CANCEL_OPERATION_REQUEST__INIT;
			ims_cli_progress_end(&prog);
			fprintf(cli->err, "imgstore: cancelling %s (operation %s)\n", prog.label,
				ims_cli_escape(esc, sizeof(esc), op->id, false));
			creq.id = op->id;
			if ((r = ims_cli_call(cli, "imgstore.v1.OperationService/CancelOperation",
					      &creq, &imgstore__v1__operation__descriptor, &next)))
				goto out;
			protobuf_c_message_free_unpacked(&op->base, NULL);
			op = next;
			cancel_sent = true;
			cancel_at = now(cli);
			continue;
		}
		if (cancel_sent && now(cli) - cancel_at > CANCEL_GRACE_SECONDS) {
			ims_cli_progress_end(&prog);
			r = ims_cli_fail(cli,
					 "operation %s did not stop after it was cancelled; see "
					 "'imgstore op get %s'",
					 op->id, op->id);
			goto out;
		}
		if (timeout_s && now(cli) - t0 >= (double)timeout_s) {
			ims_cli_progress_end(&prog);
			r = ims_cli_fail(cli,
					 "gave up waiting after %s: %s is still %s (operation %s)",
					 ims_format_duration(dur, sizeof(dur), timeout_s), label,
					 ims_cli_op_state_name(op->state), op->id);
			goto out;
		}
		Imgstore__V1__WaitOperationRequest wreq =
			IMGSTORE__V1__WAIT_OPERATION_REQUEST__INIT;
		wreq.id = op->id;
		wreq.timeout_ms = cli->poll_ms;
		if ((r = ims_cli_call(cli, "imgstore.v1.OperationService/WaitOperation", &wreq,
				      &imgstore__v1__operation__descriptor, &next))) {
			ims_cli_progress_end(&prog);
			goto out;
		}
		protobuf_c_message_free_unpacked(&op->base, NULL);
		op = next;
	}
	if (!terminal(op->state)) { /* decided: it goes on in the daemon */
		ims_cli_progress_end(&prog);
		r = 0;
		goto out;
	}
	if (op->state == IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_SUCCEEDED && prog.drawn)
		ims_cli_progress_update(&prog, op->state,
					op->bytes_total ? op->bytes_total : op->bytes_done,
					op->bytes_total);
	ims_cli_progress_end(&prog);
	if (op->state == IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_SUCCEEDED)
		r = 0;
	else if (op->state == IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_CANCELLED)
		r = ims_cli_fail(cli, "%s cancelled", label);
	else if (op->error && *op->error)
		r = ims_cli_fail(cli, "%s", op->error);
	else
		r = ims_cli_fail(cli, "%s failed", label);
out:
	ims_cli_arm_sigint(cli, false);
	*opp = op;
	return r;
}

/* "import rbd/vm1: succeeded, 2 GiB in 12s" */
static void print_summary(ims_cli *cli, const Imgstore__V1__Operation *op)
{
	char label[512], line[768], size[32], dur[32];
	size_t o;

	op_label(label, sizeof(label), op);
	o = (size_t)snprintf(line, sizeof(line), "%s: %s", label, ims_cli_op_state_name(op->state));
	if (op->bytes_total && o < sizeof(line))
		o += (size_t)snprintf(line + o, sizeof(line) - o, ", %s",
				      ims_format_size(size, sizeof(size), op->bytes_total));
	if (op->started_unix && op->finished_unix >= op->started_unix && o < sizeof(line))
		o += (size_t)snprintf(
			line + o, sizeof(line) - o, " in %s",
			ims_format_duration(dur, sizeof(dur),
					    (uint64_t)(op->finished_unix - op->started_unix)));
	if (op->result && op->result[0] && o < sizeof(line))
		snprintf(line + o, sizeof(line) - o, ": %s", op->result);
	ims_cli_print_line(cli, line);
}

int ims_cli_finish_op(ims_cli *cli, Imgstore__V1__Operation *op, const ims_cli_wait_opts *w)
{
	int r = 0;

	if (w->no_wait) {
		if (cli->format == IMS_CLI_FORMAT_JSON)
			ims_cli_print_message(cli, &op->base);
		else
			ims_cli_print_line(cli, op->id);
		goto out;
	}
	r = ims_cli_wait_opts_run(cli, &op, w);
	if (cli->format == IMS_CLI_FORMAT_JSON) {
		/* the document says how it ended, also when that is a failure; or, decided, how
		 * it stands (its state running, "decided" true) */
		if (terminal(op->state) || (r == 0 && op->decided))
			ims_cli_print_message(cli, &op->base);
	} else if (r == 0 && !terminal(op->state)) {
		/* decided: what is known now, and how to follow the rest */
		char label[512], line[1200], esc[256];
		op_label(label, sizeof(label), op);
		snprintf(line, sizeof(line), "%s: %s", label, op->result ? op->result : "");
		ims_cli_print_line(cli, line);
		ims_cli_escape(esc, sizeof(esc), op->id, false);
		fprintf(cli->err,
			"imgstore: operation %s goes on in the daemon: `imgstore op wait %s` waits "
			"for its end, `imgstore op get %s` shows it\n",
			esc, esc, esc);
	} else {
		if (r == 0)
			print_summary(cli, op);
		/* a batch's parts, one line each (a site failover's images), also when it failed */
		for (size_t i = 0; i < op->n_details; i++) {
			char line[1100];
			snprintf(line, sizeof(line), "  %s", op->details[i]);
			ims_cli_print_line(cli, line);
		}
	}
out:
	protobuf_c_message_free_unpacked(&op->base, NULL);
	return r;
}
