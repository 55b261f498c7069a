/* The MCU's pins <-> the physical model: motor duty and direction read from the timer
 * and port registers, encoder edges and the battery voltage driven onto the input pins,
 * servo pulses measured on theirs. Registers are read directly from simavr's data space
 * (much cheaper than its GETSTATE ioctl, a walk over every peripheral); the model reads
 * six of them every physics step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <avr_adc.h>
#include <avr_ioport.h>

#include "emu.h"

static uint16_t reg16(const avr_t *avr, unsigned addr)
{
	return (uint16_t)(avr->data[addr] | (avr->data[addr + 1] << 8));
}

static unsigned timer_base(int timer)
{
	/* TCCRnA of the ATmega2560's 16-bit timers; TCCRnB +1, ICRn +6, OCRnA +8 */
	switch (timer) {
	case 1: return 0x80;
	case 3: return 0x90;
	case 4: return 0xA0;
	case 5: return 0x120;
	default: return 0;
	}
}

/* Data-space address of PINx on the ATmega2560; DDRx is +1, PORTx +2. Reading the
 * registers directly is much cheaper than simavr's GETSTATE ioctl (a walk over every
 * peripheral), and the model reads six of them every physics step. */
static unsigned pin_register(char port)
{
	static const unsigned addr['L' - 'A' + 1] = { ['A' - 'A'] = 0x20, ['B' - 'A'] = 0x23,
		['C' - 'A'] = 0x26, ['D' - 'A'] = 0x29, ['E' - 'A'] = 0x2C, ['F' - 'A'] = 0x2F,
		['G' - 'A'] = 0x32, ['H' - 'A'] = 0x100, ['J' - 'A'] = 0x103, ['K' - 'A'] = 0x106,
		['L' - 'A'] = 0x109 };
	return addr[port - 'A'];
}

port_regs port_state(const avr_t *avr, char port)
{
	unsigned a = pin_register(port);
	return (port_regs){ avr->data[a], avr->data[a + 1], avr->data[a + 2] };
}

/* Duty cycle (0..1) and frequency the pin really puts out, from the timer registers when
 * the compare output drives it and from PORT when it is plain GPIO. */
static void read_pwm(avr_t *avr, motor_io *m)
{
	port_regs st = port_state(avr, m->pwm.port);
	int is_output = (st.ddr >> m->pwm.bit) & 1;
	int port_level = (st.port >> m->pwm.bit) & 1;
	unsigned base = timer_base(m->timer);
	uint8_t tccra = avr->data[base], tccrb = avr->data[base + 1];
	int wgm = (tccra & 3) | (((tccrb >> 3) & 3) << 2);
	int com = (tccra >> 6) & 3;
	static const unsigned prescale[8] = { 0, 1, 8, 64, 256, 1024, 0, 0 };
	unsigned pre = prescale[tccrb & 7];
	unsigned ocr = reg16(avr, base + 8), icr = reg16(avr, base + 6);

	m->pwm_hz = 0;
	if (!is_output) {
		m->duty = 0;
		m->pwm_mode = "input";
		return;
	}
	if (com < 2 || pre == 0) {
		m->duty = port_level;
		m->pwm_mode = "gpio";
		return;
	}
	unsigned top = 0;
	bool fast = false;
	switch (wgm) {
	case 5: top = 0xFF; fast = true; break;
	case 6: top = 0x1FF; fast = true; break;
	case 7: top = 0x3FF; fast = true; break;
	case 14: top = icr; fast = true; break;
	case 1: top = 0xFF; break;
	case 2: top = 0x1FF; break;
	case 3: top = 0x3FF; break;
	case 8:
	case 10: top = icr; break;
	default:
		m->duty = port_level;
		m->pwm_mode = "unsupported";
		return;
	}
	double duty;
	if (top == 0) {
		duty = 0;
	} else if (fast) {
		/* high from BOTTOM through the compare match: OCR + 1 of TOP + 1 counts */
		duty = ocr >= top ? 1.0 : (double)(ocr + 1) / (double)(top + 1);
		m->pwm_hz = (double)F_CPU_HZ / ((double)pre * (top + 1));
	} else {
		duty = ocr >= top ? 1.0 : (double)ocr / (double)top;
		m->pwm_hz = (double)F_CPU_HZ / (2.0 * pre * top);
	}
	if (com == 3)
		duty = 1.0 - duty;
	m->duty = duty;
	m->pwm_mode = fast ? "fast_pwm" : "phase_correct_pwm";
}

/* Puts pin_mv on ADC0. simavr 1.6 converts with code = mV * 1023 / Vref (truncated); the
 * ATmega2560 datasheet says code = Vin * 1024 / Vref. We inject the whole millivolts that
 * make simavr produce the datasheet's code (exact for the 5 V AVCC reference the firmware
 * uses; with another reference the code may be 1 LSB off). */
void inject_adc(board *b, double pin_mv)
{
	const double vref = b->avr->avcc;
	double code = floor(pin_mv * 1024.0 / vref);
	if (code > 1023)
		code = 1023;
	if (code < 0)
		code = 0;
	avr_raise_irq(b->adc0, (uint32_t)ceil(code * vref / 1023.0));
}

/* After an MCU reset simavr has zeroed the PIN registers but its pin IRQs remember the
 * old levels (they only notify on change), so write the external levels back directly;
 * the outputs went low without notifying, so forget half-seen servo pulses. */
void after_mcu_reset(board *b)
{
	for (int i = 0; i < ZIMA_SERVO_COUNT; i++) {
		b->servo[i].level = 0;
		b->servo[i].rise_cycle = b->servo[i].last_rise_cycle = 0;
		b->servo[i].width_us = b->servo[i].period_us = 0;
	}
	for (int i = 0; i < 2; i++) {
		int a, bl;
		encoder_levels(b->track[i].counts, &a, &bl);
		const pin_ref *pins[2] = { &b->motor[i].enc_a, &b->motor[i].enc_b };
		int levels[2] = { a, bl };
		for (int k = 0; k < 2; k++) {
			unsigned addr = pin_register(pins[k]->port);
			uint8_t mask = (uint8_t)(1u << pins[k]->bit);
			b->avr->data[addr] = (uint8_t)((b->avr->data[addr] & ~mask) | (levels[k] ? mask : 0));
		}
	}
	inject_adc(b, b->adc_pin_mv);
	for (int r = 0; r < PROBE_REGS; r++)
		b->probe[r].open = false; /* a region cut by the reset never closes */
}

struct edge_ctx {
	board *b;
	motor_io *m;
};

/* Drives an input pin from outside the MCU. The level is also declared as the port's
 * "external" value: simavr re-raises a pulled-up input pin to 1 on every write to its
 * PORT register (digitalWrite on another pin of the port) unless an external level is
 * declared, which would put false edges on the encoder lines. */
void drive_input(board *b, const pin_ref *p, int level)
{
	int k = p->port - 'A';
	uint8_t mask = (uint8_t)(1u << p->bit);
	b->ext_mask[k] |= mask;
	b->ext_value[k] = (uint8_t)((b->ext_value[k] & ~mask) | (level ? mask : 0));
	avr_ioport_external_t ext = { .name = (unsigned long)p->port, .mask = b->ext_mask[k],
		.value = b->ext_value[k] };
	avr_ioctl(b->avr, AVR_IOCTL_IOPORT_SET_EXTERNAL(p->port), &ext);
	avr_raise_irq(p->irq, level ? 1 : 0);
}

static void encoder_edge(void *ctx, int64_t counts)
{
	struct edge_ctx *e = ctx;
	int a, bl;
	encoder_levels(counts, &a, &bl);
	/* one channel changes per count; the other's IRQ filters the unchanged level */
	drive_input(e->b, &e->m->enc_a, a);
	drive_input(e->b, &e->m->enc_b, bl);
}

/* ---- external wheels ---------------------------------------------------------------- */

/* Closest spacing of one side's edges, in cycles. Edges are put on the pins at physics
 * steps, at most one per side per step: two edges of one channel pair closer than the
 * encoder ISR's latency would reach the firmware as a double step (counted 0). */
static double wheels_min_spacing(const board *b)
{
	double min_edge = b->cfg.wheels_min_edge_us * F_CPU_HZ / 1e6;
	double step = b->cfg.physics_us * F_CPU_HZ / 1e6;
	return min_edge > step ? min_edge : step;
}

/* One physics step of a walk: at most one edge towards the target, when it is due. */
static void wheel_walk_step(board *b, int side, struct edge_ctx *ctx)
{
	track *t = &b->track[side];
	wheel_walk *w = &b->wheel[side];
	double now = (double)b->cycles;
	if (t->counts == w->target) {
		t->speed_m_s = 0;
		return;
	}
	int dir = w->target > t->counts ? 1 : -1;
	/* the state line's speed is the walk's rate */
	t->speed_m_s = dir * (double)F_CPU_HZ / w->spacing / b->cfg.track.ticks_per_m;
	if (now < w->next_edge)
		return;
	t->counts += dir;
	t->position_counts = (double)t->counts + 0.5;
	encoder_edge(ctx, t->counts);
	double next = w->next_edge + w->spacing;
	double earliest = now + wheels_min_spacing(b);
	w->next_edge = next > earliest ? next : earliest;
}

/* Switches external wheels on (targets: the present counts, nothing moves) or off (the
 * track model takes over from the present counts, at rest). */
void wheels_external(board *b, bool on)
{
	if (on == b->wheels_external)
		return;
	b->wheels_external = on;
	b->wheels_cmds = 0;
	for (int i = 0; i < 2; i++) {
		track *t = &b->track[i];
		t->speed_m_s = t->motor_m_s = 0;
		t->position_counts = (double)t->counts + 0.5;
		b->wheel[i].target = t->counts;
		b->wheel[i].next_edge = (double)b->cycles;
		b->wheel[i].spacing = wheels_min_spacing(b);
	}
}

/* New absolute targets: walk from the present counts with evenly spaced edges over the
 * interval since the previous command (what the sender's loop period is, so the edges
 * arrive as a steady speed), capped at wheels_max_spread_ms; never closer than
 * wheels_min_spacing (then the walk takes longer and the command counts as late). */
void wheels_set(board *b, const int64_t target[2])
{
	wheels_external(b, true);
	const double first_cycles = 0.010 * F_CPU_HZ; /* first command: a 100 Hz sender */
	double max_spread = b->cfg.wheels_max_spread_ms * F_CPU_HZ / 1000;
	double min_spacing = wheels_min_spacing(b);
	double interval = b->wheels_cmds ? (double)(b->cycles - b->wheels_last_cycle) : first_cycles;
	if (interval > max_spread)
		interval = max_spread;
	if (interval < min_spacing)
		interval = min_spacing;
	b->wheels_cmds++;
	b->wheels_last_cycle = b->cycles;
	for (int i = 0; i < 2; i++) {
		wheel_walk *w = &b->wheel[i];
		int64_t n = target[i] - b->track[i].counts;
		if (n < 0)
			n = -n;
		w->target = target[i];
		if (n == 0)
			continue;
		double spacing = interval / (double)n;
		if (spacing < min_spacing) {
			spacing = min_spacing;
			w->late++;
		}
		w->spacing = spacing;
		w->next_edge = (double)b->cycles + spacing;
	}
}

/* The battery divider's output on ADC0, re-injected when it moved by half a millivolt. */
void update_adc(board *b)
{
	double pin_mv = b->batt.terminal_mv / b->cfg.divider;
	if (fabs(pin_mv - b->adc_pin_mv) >= 0.5) {
		b->adc_pin_mv = pin_mv;
		inject_adc(b, pin_mv);
	}
}

void physics_step(board *b, double dt_s)
{
	for (int i = 0; i < 2; i++) {
		motor_io *m = &b->motor[i];
		read_pwm(b->avr, m);
		port_regs st = port_state(b->avr, m->dir.port);
		int dir_out = (st.ddr >> m->dir.bit) & 1;
		m->dir_level = dir_out ? (st.port >> m->dir.bit) & 1 : 0;
		double duty = m->dir_level ? m->duty : -m->duty;
		if ((duty == 0) != (b->track[i].duty == 0))
			emit_motor(b, i, duty); /* started or stopped: an event with its time */
		b->track[i].duty = duty;
		struct edge_ctx ctx = { b, m };
		if (b->wheels_external) {
			motor_step(&b->track[i], &b->cfg.track, dt_s); /* for the other program */
			wheel_walk_step(b, i, &ctx);
		} else
			track_step(&b->track[i], &b->cfg.track, dt_s, encoder_edge, &ctx);
	}
	battery_step(&b->batt, &b->cfg.battery, b->track, 2, dt_s);
	update_adc(b);
}

void on_servo_pin(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	servo_io *s = param;
	uint64_t now = now_cycles(&g_board);
	int level = value & 1;
	if (level && !s->level) {
		if (s->last_rise_cycle)
			s->period_us = (double)(now - s->last_rise_cycle) * 1e6 / F_CPU_HZ;
		s->last_rise_cycle = now;
		s->rise_cycle = now;
	} else if (!level && s->level && s->rise_cycle) {
		s->width_us = (double)(now - s->rise_cycle) * 1e6 / F_CPU_HZ;
	}
	s->level = level;
}

pin_ref pin(avr_t *avr, char port, int bit)
{
	pin_ref p = { port, bit, avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(port), bit) };
	if (!p.irq) {
		fprintf(stderr, "zima-emu: no port %c on this MCU\n", port);
		exit(1);
	}
	return p;
}
