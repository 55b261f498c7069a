/* Cycle probes: the firmware writes region markers to GPIOR0 (main loop) and GPIOR1
 * (ISRs), see firmware/src/probe.h. Writing id (1..127) opens a region; writing
 * 0x80 | id2 closes the open one and files its length, in CPU cycles, under id2. The
 * begin-to-begin distance of consecutive regions of one id gives a rate and its
 * jitter (the control tick's). The `probes` command reports them, `probes_clear`
 * starts over. Firmware that never writes the registers costs nothing here. */
#include <string.h>

#include "emu.h"

#define GPIOR0_ADDR 0x3E /* data-space addresses on the ATmega2560 */
#define GPIOR1_ADDR 0x4A

static void stat_add(cycle_stat *s, uint64_t cycles)
{
	if (!s->count || cycles < s->min)
		s->min = cycles;
	if (cycles > s->max)
		s->max = cycles;
	s->sum += cycles;
	s->count++;
}

static void on_write(avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
	board *b = param;
	avr->data[addr] = v; /* an io write callback stores the value itself */
	probe_reg *r = &b->probe[addr == GPIOR0_ADDR ? 0 : 1];
	uint64_t now = now_cycles(b);
	uint8_t id = v & 0x7F;
	if (id >= PROBE_IDS)
		return;
	probe_stats *s = &r->stats[id];
	if (!(v & 0x80)) {
		if (s->last_begin)
			stat_add(&s->period, now - s->last_begin);
		s->last_begin = now;
		r->open = true;
		r->open_id = id;
		r->open_cycle = now;
		return;
	}
	if (!r->open)
		return;
	r->open = false;
	stat_add(&s->length, now - r->open_cycle);
	s->last_end = now;
	if (id != r->open_id) /* closed under another id: its begin is this one's too */
		r->stats[id].last_begin = r->open_cycle;
}

void probes_attach(board *b)
{
	avr_register_io_write(b->avr, GPIOR0_ADDR, on_write, b);
	avr_register_io_write(b->avr, GPIOR1_ADDR, on_write, b);
}

void probes_clear(board *b)
{
	memset(b->probe, 0, sizeof(b->probe));
}
