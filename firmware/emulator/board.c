/* The board around the MCU: reads motor PWM and DIR from the MCU's registers, steps the
 * physical model (model.h), puts encoder edges and the battery voltage back on the pins,
 * measures servo pulses, and runs the MCU noticing its resets. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <avr_adc.h>
#include <avr_extint.h>
#include <avr_ioport.h>
#include <sim_elf.h>

#include "../src/pins.h"
#include "emu.h"

board g_board;

double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void simavr_logger(avr_t *avr, const int level, const char *format, va_list ap)
{
	if (avr && level > avr->log)
		return;
	fputs("simavr: ", stderr);
	vfprintf(stderr, format, ap);
}

static void no_sleep(avr_t *avr, avr_cycle_count_t how_long)
{
	/* simavr would usleep() here; the pacer (main.c) is the only clock authority */
	(void)avr;
	(void)how_long;
}

void repace(board *b)
{
	b->cycles_anchor = b->cycles;
	b->wall_anchor = wall_now();
}

uint64_t now_cycles(const board *b)
{
	avr_cycle_count_t c = b->avr->cycle;
	return b->cycles + (c >= b->last_avr_cycle ? c - b->last_avr_cycle : c);
}

/* ---- output ---------------------------------------------------------------------------- */

void external_reset(board *b)
{
	avr_reset(b->avr);
	b->avr->data[MCUSR_ADDR] |= MCUSR_EXTRF;
	b->resets_external++;
	after_mcu_reset(b);
	emit_reset(b, "external");
}

void setup_board(board *b)
{
	elf_firmware_t fw;
	memset(&fw, 0, sizeof(fw));
	if (elf_read_firmware(b->cfg.firmware, &fw) != 0) {
		fprintf(stderr, "zima-emu: cannot read firmware %s\n", b->cfg.firmware);
		exit(1);
	}
	b->avr = avr_make_mcu_by_name("atmega2560");
	if (!b->avr) {
		fprintf(stderr, "zima-emu: this simavr has no atmega2560\n");
		exit(1);
	}
	avr_global_logger_set(simavr_logger);
	avr_init(b->avr);
	b->avr->log = b->cfg.simavr_log;
	avr_load_firmware(b->avr, &fw);
	b->avr->frequency = F_CPU_HZ;
	b->avr->sleep = no_sleep;
	/* a fresh board was just powered: INFO.reset_cause says power-on */
	b->avr->data[MCUSR_ADDR] |= MCUSR_PORF;
	/* Without these the ADC follows a 3.3 V default reference (ARCHITECTURE pitfalls). */
	b->avr->vcc = b->avr->avcc = b->avr->aref = 5000;
	/* simavr 1.6 "strict level triggering" polls an external-interrupt pin every cycle
	 * while it is low; on this MCU it did so for INT2..INT5 even with ISC = any change
	 * (measured: emulation 15x slower while an encoder line sat low). The firmware uses
	 * edge modes only, so switch it off for all eight. */
	for (uint8_t i = 0; i < 8; i++)
		avr_extint_set_strict_lvl_trig(b->avr, i, 0);
	b->run_raw = b->avr->run;
	b->last_avr_cycle = b->avr->cycle;

	static const struct { int timer; char pp; int pb; char dp; int db; char ap; int ab; char bp; int bb; } m[2] = {
		{ ZIMA_MOTOR_LEFT_TIMER, ZIMA_MOTOR_LEFT_PWM_PORT, ZIMA_MOTOR_LEFT_PWM_BIT,
		  ZIMA_MOTOR_LEFT_DIR_PORT, ZIMA_MOTOR_LEFT_DIR_BIT, ZIMA_ENC_LEFT_A_PORT,
		  ZIMA_ENC_LEFT_A_BIT, ZIMA_ENC_LEFT_B_PORT, ZIMA_ENC_LEFT_B_BIT },
		{ ZIMA_MOTOR_RIGHT_TIMER, ZIMA_MOTOR_RIGHT_PWM_PORT, ZIMA_MOTOR_RIGHT_PWM_BIT,
		  ZIMA_MOTOR_RIGHT_DIR_PORT, ZIMA_MOTOR_RIGHT_DIR_BIT, ZIMA_ENC_RIGHT_A_PORT,
		  ZIMA_ENC_RIGHT_A_BIT, ZIMA_ENC_RIGHT_B_PORT, ZIMA_ENC_RIGHT_B_BIT },
	};
	for (int i = 0; i < 2; i++) {
		b->motor[i].timer = m[i].timer;
		b->motor[i].pwm = pin(b->avr, m[i].pp, m[i].pb);
		b->motor[i].dir = pin(b->avr, m[i].dp, m[i].db);
		b->motor[i].enc_a = pin(b->avr, m[i].ap, m[i].ab);
		b->motor[i].enc_b = pin(b->avr, m[i].bp, m[i].bb);
		drive_input(b, &b->motor[i].enc_a, 0);
		drive_input(b, &b->motor[i].enc_b, 0);
	}
	static const struct { int arduino; char port; int bit; } servo_pins[ZIMA_SERVO_COUNT] = ZIMA_SERVO_PINS;
	for (int i = 0; i < ZIMA_SERVO_COUNT; i++) {
		b->servo[i].pin = pin(b->avr, servo_pins[i].port, servo_pins[i].bit);
		avr_irq_register_notify(b->servo[i].pin.irq, on_servo_pin, &b->servo[i]);
	}
	b->led = pin(b->avr, ZIMA_LED_PORT, ZIMA_LED_BIT);
	probes_attach(b);

	b->adc0 = avr_io_getirq(b->avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0 + ZIMA_BATTERY_ADC_CHANNEL);
	battery_set(&b->batt, b->cfg.battery_mv);
	battery_step(&b->batt, &b->cfg.battery, b->track, 2, 0);
	b->adc_pin_mv = b->batt.terminal_mv / b->cfg.divider;
	inject_adc(b, b->adc_pin_mv);

	char err[256];
	if (uart_bridge_open(&b->uart, b->avr, '0', b->cfg.pty_link, err, sizeof(err)) != 0) {
		fprintf(stderr, "zima-emu: %s\n", err);
		exit(1);
	}
}

/* Runs the MCU until `until` emulated cycles, keeping the monotonic cycle count and
 * noticing watchdog resets. Returns false if the CPU stopped for good. */
bool run_until(board *b, uint64_t until)
{
	avr_t *avr = b->avr;
	while (b->cycles < until) {
		/* simavr's WDT swaps avr->run for a one-shot reset callback; the reset puts the
		 * original back. Seeing the swap is how a watchdog reset is told apart. */
		if (avr->run != b->run_raw)
			b->wdt_pending = true;
		int state = avr_run(avr);
		avr_cycle_count_t c = avr->cycle;
		b->cycles += c >= b->last_avr_cycle ? c - b->last_avr_cycle : c;
		b->last_avr_cycle = c;
		if (b->wdt_pending && avr->run == b->run_raw) {
			b->wdt_pending = false;
			b->resets_watchdog++;
			after_mcu_reset(b);
			emit_reset(b, "watchdog");
		}
		if (state == cpu_Done || state == cpu_Crashed) {
			emit_simple("crashed", NULL, "state", state == cpu_Done ? "done" : "crashed");
			return false;
		}
	}
	return true;
}

