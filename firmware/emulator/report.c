/* zima-emu's output: one JSON object per line on stdout (README.md, "Control"). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../src/pins.h"
#include "emu.h"

void emit(json_out *o)
{
	if (!json_out_ok(o)) {
		fprintf(stderr, "zima-emu: output line too long, dropped\n");
		return;
	}
	fputs(o->buf, stdout);
	fputc('\n', stdout);
	fflush(stdout);
}

void emit_state(board *b, const char *id)
{
	json_out o;
	json_out_init(&o);
	json_out_begin(&o);
	json_out_str(&o, "event", "state");
	if (id)
		json_out_raw(&o, "id", id);
	uint64_t cyc = now_cycles(b);
	json_out_int(&o, "cycles", (int64_t)cyc);
	json_out_int(&o, "time_us", (int64_t)(cyc / (F_CPU_HZ / 1000000)));
	json_out_num(&o, "wall_s", wall_now() - b->wall_start, 6);
	json_out_num(&o, "speed", b->cfg.speed, 3);
	json_out_num(&o, "lag_dropped_s", b->lag_dropped_s, 6);
	json_out_bool(&o, "wheels_external", b->wheels_external);
	static const char *side[2] = { "left", "right" };
	char key[48];
	for (int i = 0; i < 2; i++) {
		const motor_io *m = &b->motor[i];
		const track *t = &b->track[i];
		snprintf(key, sizeof(key), "duty_%s", side[i]);
		json_out_num(&o, key, m->duty, 5);
		snprintf(key, sizeof(key), "dir_%s", side[i]);
		json_out_int(&o, key, m->dir_level);
		snprintf(key, sizeof(key), "pwm_%s_hz", side[i]);
		json_out_num(&o, key, m->pwm_hz, 1);
		snprintf(key, sizeof(key), "pwm_%s_mode", side[i]);
		json_out_str(&o, key, m->pwm_mode ? m->pwm_mode : "none");
		snprintf(key, sizeof(key), "duty_signed_%s", side[i]);
		json_out_num(&o, key, t->duty, 5);
		snprintf(key, sizeof(key), "wheels_lag_%s_ticks", side[i]);
		json_out_int(&o, key, b->wheels_external ? b->wheel[i].target - t->counts : 0);
		snprintf(key, sizeof(key), "wheels_late_%s", side[i]);
		json_out_int(&o, key, (int64_t)b->wheel[i].late);
		snprintf(key, sizeof(key), "speed_%s_mm_s", side[i]);
		json_out_num(&o, key, t->speed_m_s * 1000, 3);
		snprintf(key, sizeof(key), "enc_%s_ticks", side[i]);
		json_out_int(&o, key, t->counts);
		snprintf(key, sizeof(key), "stall_%s", side[i]);
		json_out_bool(&o, key, t->stalled);
		snprintf(key, sizeof(key), "load_%s", side[i]);
		json_out_num(&o, key, t->load, 3);
	}
	json_out_num(&o, "battery_mv", b->batt.terminal_mv, 1);
	json_out_num(&o, "battery_ocv_mv", b->batt.ocv_mv, 1);
	json_out_num(&o, "battery_drawn_mah", b->batt.drawn_mah, 4);
	json_out_num(&o, "current_ma", b->batt.current_ma, 1);
	json_out_num(&o, "adc_pin_mv", b->adc_pin_mv, 1);
	char servo[256];
	size_t n = 0;
	n += (size_t)snprintf(servo + n, sizeof(servo) - n, "[");
	for (int i = 0; i < ZIMA_SERVO_COUNT; i++)
		n += (size_t)snprintf(servo + n, sizeof(servo) - n, "%s%.1f", i ? "," : "",
				b->servo[i].width_us);
	snprintf(servo + n, sizeof(servo) - n, "]");
	json_out_raw(&o, "servo_us", servo);
	json_out_num(&o, "servo_period_us", b->servo[0].period_us, 1);
	port_regs led = port_state(b->avr, b->led.port);
	json_out_bool(&o, "led", (led.port >> b->led.bit) & 1);
	json_out_int(&o, "resets_watchdog", b->resets_watchdog);
	json_out_int(&o, "resets_external", b->resets_external);
	json_out_bool(&o, "port_open", b->uart.client);
	json_out_int(&o, "uart_bytes_to_mcu", (int64_t)b->uart.bytes_to_avr);
	json_out_int(&o, "uart_bytes_from_mcu", (int64_t)b->uart.bytes_to_host);
	json_out_int(&o, "uart_bytes_dropped", (int64_t)b->uart.dropped_to_host);
	json_out_end(&o);
	emit(&o);
}

void emit_simple(const char *event, const char *id, const char *key, const char *value)
{
	json_out o;
	json_out_init(&o);
	json_out_begin(&o);
	json_out_str(&o, "event", event);
	if (id)
		json_out_raw(&o, "id", id);
	if (key)
		json_out_str(&o, key, value);
	json_out_end(&o);
	emit(&o);
}

void emit_reset(board *b, const char *cause)
{
	json_out o;
	json_out_init(&o);
	json_out_begin(&o);
	json_out_str(&o, "event", "reset");
	json_out_str(&o, "cause", cause);
	json_out_int(&o, "time_us", (int64_t)(now_cycles(b) / (F_CPU_HZ / 1000000)));
	json_out_end(&o);
	emit(&o);
}

/* ---- commands --------------------------------------------------------------------------- */

void emit_motor(board *b, int side, double duty)
{
	json_out o;
	json_out_init(&o);
	json_out_begin(&o);
	json_out_str(&o, "event", "motor");
	json_out_str(&o, "side", side ? "right" : "left");
	json_out_num(&o, "duty", duty, 5);
	json_out_int(&o, "time_us", (int64_t)(now_cycles(b) / (F_CPU_HZ / 1000000)));
	json_out_int(&o, "cycles", (int64_t)now_cycles(b));
	json_out_end(&o);
	emit(&o);
}

/* {"event":"probes","cycles":..,"main":{"1":{...},...},"isr":{...}}: per region id that
 * was seen, count, cycles (total, min, max), the cycle of its latest begin and end, and
 * begin-to-begin periods (count, min, max, mean). */
void emit_probes(board *b, const char *id)
{
	json_out o;
	json_out_init(&o);
	json_out_begin(&o);
	json_out_str(&o, "event", "probes");
	if (id)
		json_out_raw(&o, "id", id);
	json_out_int(&o, "cycles", (int64_t)now_cycles(b));
	static const char *reg_name[PROBE_REGS] = { "main", "isr" };
	for (int r = 0; r < PROBE_REGS; r++) {
		json_out_key(&o, reg_name[r]);
		json_out_begin(&o);
		for (int i = 1; i < PROBE_IDS; i++) {
			const probe_stats *s = &b->probe[r].stats[i];
			if (!s->count && !s->last_begin)
				continue;
			char key[8];
			snprintf(key, sizeof(key), "%d", i);
			json_out_key(&o, key);
			json_out_begin(&o);
			json_out_int(&o, "count", (int64_t)s->count);
			json_out_int(&o, "total", (int64_t)s->total_cycles);
			json_out_int(&o, "min", (int64_t)s->min_cycles);
			json_out_int(&o, "max", (int64_t)s->max_cycles);
			json_out_int(&o, "last_begin", (int64_t)s->last_begin);
			json_out_int(&o, "last_end", (int64_t)s->last_end);
			json_out_int(&o, "periods", (int64_t)s->periods);
			json_out_int(&o, "min_period", (int64_t)s->min_period);
			json_out_int(&o, "max_period", (int64_t)s->max_period);
			json_out_num(&o, "mean_period",
				s->periods ? (double)s->sum_period / (double)s->periods : 0, 1);
			json_out_end(&o);
		}
		json_out_end(&o);
	}
	json_out_end(&o);
	emit(&o);
}
