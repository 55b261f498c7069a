/* zima-emu's commands: one JSON object per line on stdin (README.md, "Control"). */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "emu.h"

static int sides_of(const json_object *cmd, bool *left, bool *right, char *err, size_t len)
{
	const json_field *s = json_get(cmd, "side");
	if (!s || s->type != JSON_STRING) {
		snprintf(err, len, "'side' must be \"left\", \"right\" or \"both\"");
		return -1;
	}
	*left = !strcmp(s->str, "left") || !strcmp(s->str, "both");
	*right = !strcmp(s->str, "right") || !strcmp(s->str, "both");
	if (!*left && !*right) {
		snprintf(err, len, "'side' must be \"left\", \"right\" or \"both\"");
		return -1;
	}
	return 0;
}

static const json_field *number_field(const json_object *cmd, const char *key, double min,
		double max, char *err, size_t len)
{
	const json_field *f = json_get(cmd, key);
	if (!f || f->type != JSON_NUMBER || f->num < min || f->num > max) {
		snprintf(err, len, "'%s' must be a number in [%g, %g]", key, min, max);
		return NULL;
	}
	return f;
}

/* Runs one command line; returns false when the emulator should exit. */
static bool handle_command(board *b, const char *line)
{
	json_object cmd;
	char err[160] = "";
	char idbuf[160] = "";
	const char *id = NULL;
	if (json_parse_flat(line, &cmd, err, sizeof(err)) != 0) {
		emit_simple("error", NULL, "message", err);
		return true;
	}
	const json_field *idf = json_get(&cmd, "id");
	if (idf) {
		if (idf->type == JSON_NUMBER)
			snprintf(idbuf, sizeof(idbuf), "%.0f", idf->num);
		else if (idf->type == JSON_STRING)
			snprintf(idbuf, sizeof(idbuf), "\"%.120s\"", idf->str);
		id = idbuf[0] ? idbuf : NULL;
	}
	const json_field *name = json_get(&cmd, "cmd");
	if (!name || name->type != JSON_STRING) {
		emit_simple("error", id, "message", "missing \"cmd\"");
		return true;
	}
	const char *c = name->str;
	const json_field *f;
	bool left, right;
	if (!strcmp(c, "state")) {
		emit_state(b, id);
		return true;
	} else if (!strcmp(c, "battery")) {
		if (!(f = number_field(&cmd, "mv", 0, 100000, err, sizeof(err))))
			goto fail;
		battery_set(&b->batt, f->num);
		battery_step(&b->batt, &b->cfg.battery, b->track, 2, 0);
		update_adc(b);
	} else if (!strcmp(c, "stall")) {
		const json_field *on = json_get(&cmd, "on");
		if (sides_of(&cmd, &left, &right, err, sizeof(err)) != 0)
			goto fail;
		bool v = !on || (on->type == JSON_BOOL && on->boolean);
		if (left)
			b->track[0].stalled = v;
		if (right)
			b->track[1].stalled = v;
	} else if (!strcmp(c, "load")) {
		if (sides_of(&cmd, &left, &right, err, sizeof(err)) != 0 ||
		    !(f = number_field(&cmd, "value", 0, 1, err, sizeof(err))))
			goto fail;
		if (left)
			b->track[0].load = f->num;
		if (right)
			b->track[1].load = f->num;
	} else if (!strcmp(c, "reset")) {
		external_reset(b);
	} else if (!strcmp(c, "state_hz")) {
		if (!(f = number_field(&cmd, "hz", 0, 1000, err, sizeof(err))))
			goto fail;
		b->cfg.state_hz = f->num;
	} else if (!strcmp(c, "speed")) {
		if (!(f = number_field(&cmd, "value", 0, 1000, err, sizeof(err))))
			goto fail;
		b->cfg.speed = f->num; /* 0: unpaced */
		repace(b);
	} else if (!strcmp(c, "wheels")) {
		const json_field *ext = json_get(&cmd, "external");
		const json_field *lt = json_get(&cmd, "left_ticks");
		const json_field *rt = json_get(&cmd, "right_ticks");
		if (ext && ext->type != JSON_BOOL) {
			snprintf(err, sizeof(err), "'external' must be true or false");
			goto fail;
		}
		if (lt || rt) {
			if (ext && !ext->boolean) {
				snprintf(err, sizeof(err), "'left_ticks'/'right_ticks' with \"external\":false");
				goto fail;
			}
			int64_t target[2];
			const json_field *t[2] = { lt, rt };
			static const char *key[2] = { "left_ticks", "right_ticks" };
			for (int i = 0; i < 2; i++) {
				/* the firmware counts in int32 */
				if (!t[i] || t[i]->type != JSON_NUMBER || t[i]->num != floor(t[i]->num) ||
				    t[i]->num < INT32_MIN || t[i]->num > INT32_MAX) {
					snprintf(err, sizeof(err), "'%s' must be an integer in [%d, %d]", key[i],
						INT32_MIN, INT32_MAX);
					goto fail;
				}
				target[i] = (int64_t)t[i]->num;
			}
			wheels_set(b, target);
		} else if (ext) {
			wheels_external(b, ext->boolean);
		} else {
			snprintf(err, sizeof(err), "wheels wants 'left_ticks' and 'right_ticks', or 'external'");
			goto fail;
		}
		if (!id)
			return true; /* fire and forget: a 100 Hz sender wants no answers */
	} else if (!strcmp(c, "probes")) {
		emit_probes(b, id);
		return true;
	} else if (!strcmp(c, "probes_clear")) {
		probes_clear(b);
	} else if (!strcmp(c, "quit")) {
		emit_simple("ok", id, "cmd", c);
		return false;
	} else {
		snprintf(err, sizeof(err), "unknown cmd \"%.64s\"", c);
		goto fail;
	}
	emit_simple("ok", id, "cmd", c);
	return true;
fail:
	emit_simple("error", id, "message", err);
	return true;
}

/* Non-blocking line reader on stdin; returns false on EOF (the parent went away). */
bool service_stdin(board *b)
{
	static char buf[8192];
	static size_t len;
	struct pollfd pfd = { .fd = 0, .events = POLLIN };
	while (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP))) {
		ssize_t n = read(0, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			return n < 0 && (errno == EAGAIN || errno == EINTR);
		len += (size_t)n;
		char *start = buf, *nl;
		while ((nl = memchr(start, '\n', len - (size_t)(start - buf)))) {
			*nl = '\0';
			if (nl > start && !handle_command(b, start))
				return false;
			start = nl + 1;
		}
		len -= (size_t)(start - buf);
		memmove(buf, start, len);
		if (len == sizeof(buf) - 1) {
			emit_simple("error", NULL, "message", "command line too long");
			len = 0;
		}
	}
	return true;
}
