/* zima-emu: the emulated Zima board. Runs the real firmware ELF on simavr's ATmega2560 at
 * 16 MHz, paced to the wall clock, with the robot's hardware around it:
 *
 *   UART0            a pseudo-terminal (symlinked at --pty) that pyserial opens like the
 *                    Mega's USB port
 *   motor PWM + DIR  read from the timer and port registers of the pins in pins.h
 *   tracks           first-order speed response, stall and load (model.h)
 *   encoders         quadrature edges on the four encoder pins at the track speed, or
 *                    walked to counts another program sends (external wheels: MuJoCo)
 *   battery          pack voltage / divider injected into ADC0, sagging with motor current
 *   servos           pulse widths measured on the six servo pins
 *   watchdog         simavr's WDT resets the MCU; resets are reported
 *   probes           cycle-exact markers the firmware writes to GPIOR0/GPIOR1
 *
 * Control: one JSON object per line on stdin, answers and events one JSON object per
 * line on stdout (the first is {"event":"ready",...} once the pty exists). Logs go to
 * stderr. See README.md in this folder for the commands and fields; emu.h for the files.
 */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "emu.h"

volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void emit_ready(board *b)
{
	cJSON *o = event_new("ready", NULL);
	cJSON_AddStringToObject(o, "pty", b->uart.link[0] ? b->uart.link : b->uart.device);
	cJSON_AddStringToObject(o, "device", b->uart.device);
	cJSON_AddStringToObject(o, "firmware", b->cfg.firmware);
	cJSON_AddStringToObject(o, "mcu", "atmega2560");
	add_int(o, "f_cpu", F_CPU_HZ);
	add_num(o, "speed", b->cfg.speed, 3);
	add_num(o, "ticks_per_m", b->cfg.track.ticks_per_m, 1);
	add_num(o, "tau_ms", b->cfg.track.tau_s * 1000, 3);
	add_num(o, "max_speed_mm_s", b->cfg.track.max_speed_m_s * 1000, 3);
	add_num(o, "divider", b->cfg.divider, 4);
	add_num(o, "wheels_min_edge_us", b->cfg.wheels_min_edge_us, 3);
	add_num(o, "wheels_max_spread_ms", b->cfg.wheels_max_spread_ms, 3);
	add_int(o, "pid", getpid());
	emit(o);
}

/* Paced: emulated time since the anchor, divided by speed, is when it is due. */
static void pace(board *b)
{
	if (b->cfg.speed <= 0)
		return;
	double due = b->wall_anchor + (double)(b->cycles - b->cycles_anchor) / F_CPU_HZ / b->cfg.speed;
	double now = wall_now();
	if (due > now) {
		struct timespec ts;
		double d = due - now;
		ts.tv_sec = (time_t)d;
		ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
		nanosleep(&ts, NULL);
	} else if (now - due > b->cfg.max_lag_ms / 1000) {
		/* too slow (or stopped by a debugger): do not race to catch up */
		b->lag_dropped_s += now - due;
		repace(b);
	}
}

int main(int argc, char **argv)
{
	board *b = &g_board;
	parse_args(argc, argv, &b->cfg);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	setup_board(b);
	emit_ready(b);

	const uint64_t phys_cycles = (uint64_t)(b->cfg.physics_us * F_CPU_HZ / 1e6);
	const uint64_t slice_cycles = F_CPU_HZ / 1000; /* I/O and pacing every emulated ms */
	b->wall_start = wall_now();
	repace(b);
	uint64_t next_state_cycles = 0;
	int rc = 0;

	while (!g_stop) {
		uint64_t slice_end = b->cycles + slice_cycles;
		while (b->cycles < slice_end) {
			uint64_t start = b->cycles;
			if (!run_until(b, start + phys_cycles)) {
				rc = 3;
				goto out;
			}
			physics_step(b, (double)(b->cycles - start) / F_CPU_HZ);
		}
		enum uart_bridge_change ch = uart_bridge_service(&b->uart);
		if (ch != UART_BRIDGE_SAME) {
			cJSON *o = event_new("port", NULL);
			cJSON_AddBoolToObject(o, "open", ch == UART_BRIDGE_OPENED);
			add_int(o, "time_us", (int64_t)(now_cycles(b) / (F_CPU_HZ / 1000000)));
			emit(o);
			if (ch == UART_BRIDGE_OPENED && b->cfg.reset_on_open)
				external_reset(b);
		}
		if (!service_stdin(b))
			break;

		/* periodic state: every 1/state_hz of emulated time */
		if (b->cfg.state_hz > 0 && b->cycles >= next_state_cycles) {
			emit_state(b, NULL);
			next_state_cycles = b->cycles + (uint64_t)(F_CPU_HZ / b->cfg.state_hz);
		}
		pace(b);
	}
out:
	emit_simple("exit", NULL, NULL, NULL);
	uart_bridge_close(&b->uart);
	avr_terminate(b->avr);
	return rc;
}
