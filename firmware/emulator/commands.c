/* zima-emu's commands: one JSON object per line on stdin (README.md, "Control"). */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "emu.h"

static int sides_of(const cJSON *cmd, bool *left, bool *right, char *err, size_t len)
{
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(cmd, "side");
	const char *side = cJSON_IsString(s) ? s->valuestring : "";
	*left = !strcmp(side, "left") || !strcmp(side, "both");
	*right = !strcmp(side, "right") || !strcmp(side, "both");
	if (!*left && !*right) {
		snprintf(err, len, "'side' must be \"left\", \"right\" or \"both\"");
		return -1;
	}
	return 0;
}

static const cJSON *number_field(const cJSON *cmd, const char *key, double min, double max,
		char *err, size_t len)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(cmd, key);
	if (!cJSON_IsNumber(f) || !(f->valuedouble >= min && f->valuedouble <= max)) {
		snprintf(err, len, "'%s' must be a number in [%g, %g]", key, min, max);
		return NULL;
	}
	return f;
}

/* "wheels": absolute encoder targets, or external wheels on/off. */
static int wheels_command(board *b, const cJSON *cmd, char *err, size_t len)
{
	const cJSON *ext = cJSON_GetObjectItemCaseSensitive(cmd, "external");
	const cJSON *lt = cJSON_GetObjectItemCaseSensitive(cmd, "left_ticks");
	const cJSON *rt = cJSON_GetObjectItemCaseSensitive(cmd, "right_ticks");
	if (ext && !cJSON_IsBool(ext)) {
		snprintf(err, len, "'external' must be true or false");
		return -1;
	}
	if (!lt && !rt) {
		if (!ext) {
			snprintf(err, len, "wheels wants 'left_ticks' and 'right_ticks', or 'external'");
			return -1;
		}
		wheels_external(b, cJSON_IsTrue(ext));
		return 0;
	}
	if (cJSON_IsFalse(ext)) {
		snprintf(err, len, "'left_ticks'/'right_ticks' with \"external\":false");
		return -1;
	}
	int64_t target[2];
	const cJSON *t[2] = { lt, rt };
	static const char *key[2] = { "left_ticks", "right_ticks" };
	for (int i = 0; i < 2; i++) {
		double v = cJSON_IsNumber(t[i]) ? t[i]->valuedouble : NAN;
		/* the firmware counts in int32 */
		if (!(v == floor(v) && v >= INT32_MIN && v <= INT32_MAX)) {
			snprintf(err, len, "'%s' must be an integer in [%d, %d]", key[i], INT32_MIN,
				INT32_MAX);
			return -1;
		}
		target[i] = (int64_t)v;
	}
	wheels_set(b, target);
	return 0;
}

/* Runs one parsed command; 0 when done, -1 with a message in err. */
static int run_command(board *b, const cJSON *cmd, const char *c, char *err, size_t len)
{
	const cJSON *f;
	bool left, right;
	if (!strcmp(c, "battery")) {
		if (!(f = number_field(cmd, "mv", 0, 100000, err, len)))
			return -1;
		battery_set(&b->batt, f->valuedouble);
		battery_step(&b->batt, &b->cfg.battery, b->track, 2, 0);
		update_adc(b);
	} else if (!strcmp(c, "stall")) {
		if (sides_of(cmd, &left, &right, err, len) != 0)
			return -1;
		const cJSON *on = cJSON_GetObjectItemCaseSensitive(cmd, "on");
		bool v = !on || cJSON_IsTrue(on); /* "on" that is no boolean: off */
		if (left)
			b->track[0].stalled = v;
		if (right)
			b->track[1].stalled = v;
	} else if (!strcmp(c, "load")) {
		if (sides_of(cmd, &left, &right, err, len) != 0 ||
		    !(f = number_field(cmd, "value", 0, 1, err, len)))
			return -1;
		if (left)
			b->track[0].load = f->valuedouble;
		if (right)
			b->track[1].load = f->valuedouble;
	} else if (!strcmp(c, "reset")) {
		external_reset(b);
	} else if (!strcmp(c, "state_hz")) {
		if (!(f = number_field(cmd, "hz", 0, 1000, err, len)))
			return -1;
		b->cfg.state_hz = f->valuedouble;
	} else if (!strcmp(c, "speed")) {
		if (!(f = number_field(cmd, "value", 0, 1000, err, len)))
			return -1;
		b->cfg.speed = f->valuedouble; /* 0: unpaced */
		repace(b);
	} else if (!strcmp(c, "wheels")) {
		return wheels_command(b, cmd, err, len);
	} else if (!strcmp(c, "probes_clear")) {
		probes_clear(b);
	} else {
		snprintf(err, len, "unknown cmd \"%.64s\"", c);
		return -1;
	}
	return 0;
}

/* Runs one command line; returns false when the emulator should exit. */
static bool handle_command(board *b, const char *line)
{
	const char *end = NULL;
	cJSON *cmd = cJSON_ParseWithOpts(line, &end, true);
	if (!cJSON_IsObject(cmd)) {
		emit_simple("error", NULL, "message",
			cmd ? "expected a JSON object" : "not JSON (or text after the object)");
		cJSON_Delete(cmd);
		return true;
	}
	/* a number or a string identifies the answer; anything else is no id */
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(cmd, "id");
	if (!cJSON_IsNumber(id) && !cJSON_IsString(id))
		id = NULL;
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(cmd, "cmd");
	const char *c = cJSON_IsString(name) ? name->valuestring : NULL;
	char err[160] = "";
	bool go_on = true;
	if (!c) {
		emit_simple("error", id, "message", "missing \"cmd\"");
	} else if (!strcmp(c, "state")) {
		emit_state(b, id);
	} else if (!strcmp(c, "probes")) {
		emit_probes(b, id);
	} else if (!strcmp(c, "quit")) {
		emit_simple("ok", id, "cmd", c);
		go_on = false;
	} else if (run_command(b, cmd, c, err, sizeof(err)) != 0) {
		emit_simple("error", id, "message", err);
	} else if (id || strcmp(c, "wheels")) {
		emit_simple("ok", id, "cmd", c); /* wheels without an id: a 100 Hz sender wants none */
	}
	cJSON_Delete(cmd);
	return go_on;
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
