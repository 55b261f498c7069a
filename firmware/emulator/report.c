/* zima-emu's output: one JSON object per line on stdout (README.md, "Control"). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../src/pins.h"
#include "emu.h"

cJSON *event_new(const char *event, const cJSON *id)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "event", event);
	if (id)
		cJSON_AddItemToObject(o, "id", cJSON_Duplicate(id, true));
	return o;
}

void add_num(cJSON *o, const char *key, double value, int decimals)
{
	double scale = pow(10, decimals);
	/* rounded to what the value means (a non-finite one prints as null) */
	cJSON_AddNumberToObject(o, key, isfinite(value) ? round(value * scale) / scale : value);
}

void add_int(cJSON *o, const char *key, int64_t value)
{
	cJSON_AddNumberToObject(o, key, (double)value); /* exact below 2^53 (18 years of cycles) */
}

void emit(cJSON *o)
{
	char *line = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (!line) {
		fprintf(stderr, "zima-emu: out of memory for an output line, dropped\n");
		return;
	}
	fputs(line, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	cJSON_free(line);
}

void emit_state(board *b, const cJSON *id)
{
	cJSON *o = event_new("state", id);
	uint64_t cyc = now_cycles(b);
	add_int(o, "cycles", (int64_t)cyc);
	add_int(o, "time_us", (int64_t)(cyc / (F_CPU_HZ / 1000000)));
	add_num(o, "wall_s", wall_now() - b->wall_start, 6);
	add_num(o, "speed", b->cfg.speed, 3);
	add_num(o, "lag_dropped_s", b->lag_dropped_s, 6);
	cJSON_AddBoolToObject(o, "wheels_external", b->wheels_external);
	static const char *side[2] = { "left", "right" };
	char key[48];
	for (int i = 0; i < 2; i++) {
		const motor_io *m = &b->motor[i];
		const track *t = &b->track[i];
		snprintf(key, sizeof(key), "duty_%s", side[i]);
		add_num(o, key, m->duty, 5);
		snprintf(key, sizeof(key), "dir_%s", side[i]);
		add_int(o, key, m->dir_level);
		snprintf(key, sizeof(key), "pwm_%s_hz", side[i]);
		add_num(o, key, m->pwm_hz, 1);
		snprintf(key, sizeof(key), "pwm_%s_mode", side[i]);
		cJSON_AddStringToObject(o, key, m->pwm_mode ? m->pwm_mode : "none");
		snprintf(key, sizeof(key), "duty_signed_%s", side[i]);
		add_num(o, key, t->duty, 5);
		snprintf(key, sizeof(key), "wheels_lag_%s_ticks", side[i]);
		add_int(o, key, b->wheels_external ? b->wheel[i].target - t->counts : 0);
		snprintf(key, sizeof(key), "wheels_late_%s", side[i]);
		add_int(o, key, (int64_t)b->wheel[i].late);
		snprintf(key, sizeof(key), "speed_%s_mm_s", side[i]);
		add_num(o, key, t->speed_m_s * 1000, 3);
		snprintf(key, sizeof(key), "motor_%s_mm_s", side[i]);
		add_num(o, key, t->motor_m_s * 1000, 3);
		snprintf(key, sizeof(key), "enc_%s_ticks", side[i]);
		add_int(o, key, t->counts);
		snprintf(key, sizeof(key), "stall_%s", side[i]);
		cJSON_AddBoolToObject(o, key, t->stalled);
		snprintf(key, sizeof(key), "load_%s", side[i]);
		add_num(o, key, t->load, 3);
	}
	add_num(o, "battery_mv", b->batt.terminal_mv, 1);
	add_num(o, "battery_ocv_mv", b->batt.ocv_mv, 1);
	add_num(o, "battery_drawn_mah", b->batt.drawn_mah, 4);
	add_num(o, "current_ma", b->batt.current_ma, 1);
	add_num(o, "adc_pin_mv", b->adc_pin_mv, 1);
	cJSON *servo = cJSON_AddArrayToObject(o, "servo_us");
	for (int i = 0; i < ZIMA_SERVO_COUNT; i++)
		cJSON_AddItemToArray(servo, cJSON_CreateNumber(round(b->servo[i].width_us * 10) / 10));
	add_num(o, "servo_period_us", b->servo[0].period_us, 1);
	port_regs led = port_state(b->avr, b->led.port);
	cJSON_AddBoolToObject(o, "led", (led.port >> b->led.bit) & 1);
	add_int(o, "resets_watchdog", b->resets_watchdog);
	add_int(o, "resets_external", b->resets_external);
	cJSON_AddBoolToObject(o, "port_open", b->uart.client);
	add_int(o, "uart_bytes_to_mcu", (int64_t)b->uart.bytes_to_avr);
	add_int(o, "uart_bytes_from_mcu", (int64_t)b->uart.bytes_to_host);
	add_int(o, "uart_bytes_dropped", (int64_t)b->uart.dropped_to_host);
	emit(o);
}

void emit_simple(const char *event, const cJSON *id, const char *key, const char *value)
{
	cJSON *o = event_new(event, id);
	if (key)
		cJSON_AddStringToObject(o, key, value);
	emit(o);
}

void emit_reset(board *b, const char *cause)
{
	cJSON *o = event_new("reset", NULL);
	cJSON_AddStringToObject(o, "cause", cause);
	add_int(o, "time_us", (int64_t)(now_cycles(b) / (F_CPU_HZ / 1000000)));
	emit(o);
}

/* ---- commands --------------------------------------------------------------------------- */

void emit_motor(board *b, int side, double duty)
{
	cJSON *o = event_new("motor", NULL);
	cJSON_AddStringToObject(o, "side", side ? "right" : "left");
	add_num(o, "duty", duty, 5);
	add_int(o, "time_us", (int64_t)(now_cycles(b) / (F_CPU_HZ / 1000000)));
	add_int(o, "cycles", (int64_t)now_cycles(b));
	emit(o);
}

/* {"event":"probes","cycles":..,"main":{"1":{...},...},"isr":{...}}: per region id that
 * was seen, count, cycles (total, min, max), the cycle of its latest begin and end, and
 * begin-to-begin periods (count, min, max, mean). */
void emit_probes(board *b, const cJSON *id)
{
	cJSON *o = event_new("probes", id);
	add_int(o, "cycles", (int64_t)now_cycles(b));
	static const char *reg_name[PROBE_REGS] = { "main", "isr" };
	for (int r = 0; r < PROBE_REGS; r++) {
		cJSON *reg = cJSON_AddObjectToObject(o, reg_name[r]);
		for (int i = 1; i < PROBE_IDS; i++) {
			const probe_stats *s = &b->probe[r].stats[i];
			if (!s->length.count && !s->last_begin)
				continue;
			char key[8];
			snprintf(key, sizeof(key), "%d", i);
			cJSON *region = cJSON_AddObjectToObject(reg, key);
			add_int(region, "count", (int64_t)s->length.count);
			add_int(region, "total", (int64_t)s->length.sum);
			add_int(region, "min", (int64_t)s->length.min);
			add_int(region, "max", (int64_t)s->length.max);
			add_int(region, "last_begin", (int64_t)s->last_begin);
			add_int(region, "last_end", (int64_t)s->last_end);
			add_int(region, "periods", (int64_t)s->period.count);
			add_int(region, "min_period", (int64_t)s->period.min);
			add_int(region, "max_period", (int64_t)s->period.max);
			add_num(region, "mean_period",
				s->period.count ? (double)s->period.sum / (double)s->period.count : 0,
				1);
		}
	}
	emit(o);
}
