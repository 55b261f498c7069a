/* See model.h for the equations. */
#include "model.h"

#include <math.h>

void encoder_levels(int64_t counts, int *a, int *b)
{
	/* Gray sequence for A,B counting up: 00 -> 10 -> 11 -> 01 -> 00 */
	static const int kA[4] = { 0, 1, 1, 0 };
	static const int kB[4] = { 0, 0, 1, 1 };
	int phase = (int)(((counts % 4) + 4) % 4);
	*a = kA[phase];
	*b = kB[phase];
}

void motor_step(track *t, const track_params *p, double dt_s)
{
	double load = t->load < 0 ? 0 : (t->load > 1 ? 1 : t->load);
	double target = t->duty * p->max_speed_m_s * (1.0 - load);
	if (t->stalled) {
		t->motor_m_s = 0.0;
	} else if (p->tau_s > 0) {
		t->motor_m_s = target + (t->motor_m_s - target) * exp(-dt_s / p->tau_s);
	} else {
		t->motor_m_s = target;
	}
}

void track_step(track *t, const track_params *p, double dt_s,
		void (*edge)(void *ctx, int64_t counts), void *ctx)
{
	motor_step(t, p, dt_s);
	t->speed_m_s = t->motor_m_s;
	t->position_counts += t->speed_m_s * dt_s * p->ticks_per_m;
	int64_t whole = (int64_t)floor(t->position_counts);
	while (t->counts < whole) {
		t->counts++;
		if (edge)
			edge(ctx, t->counts);
	}
	while (t->counts > whole) {
		t->counts--;
		if (edge)
			edge(ctx, t->counts);
	}
}

void battery_set(battery *b, double full_mv)
{
	b->full_mv = full_mv;
	b->drawn_mah = 0;
	b->ocv_mv = full_mv;
	b->terminal_mv = full_mv; /* the sag under load is applied at the next step */
}

void battery_step(battery *b, const battery_params *p, const track *tracks, int n_tracks,
		double dt_s)
{
	double ma = p->idle_ma;
	for (int i = 0; i < n_tracks; i++) {
		double load = tracks[i].stalled ? 1.0 : tracks[i].load;
		if (load < 0)
			load = 0;
		if (load > 1)
			load = 1;
		ma += fabs(tracks[i].duty) * p->motor_ma * (1.0 + 2.0 * load);
	}
	b->current_ma = ma;
	if (p->discharge && p->capacity_mah > 0) {
		b->drawn_mah += ma * dt_s / 3600.0;
		double frac = b->drawn_mah / p->capacity_mah;
		if (frac > 1)
			frac = 1;
		b->ocv_mv = b->full_mv - (b->full_mv - p->empty_mv) * frac;
	} else {
		b->ocv_mv = b->full_mv;
	}
	double mv = b->ocv_mv - ma * p->internal_mohm / 1000.0;
	b->terminal_mv = mv < 0 ? 0 : mv;
}
