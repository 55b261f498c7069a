/* The physical side of the emulated board: two tracks driven by DC motors through
 * H-bridges, their quadrature encoders, and the battery pack. Pure C, no simavr: the
 * harness (main.c) feeds it PWM duty and direction read from the MCU's registers and
 * turns its encoder edges into pin changes.
 *
 * Track: first-order response from signed duty d (-1..1) to track speed v (m/s):
 *     v_ss = d * max_speed * (1 - load)          (load 0..1: 1 = fully loaded, no motion)
 *     dv/dt = (v_ss - v) / tau                   (solved exactly per step)
 * A stalled track (blocked by an obstacle) is held at v = 0 whatever the duty.
 * Encoder: counts = integral of v * ticks_per_m, 4 counts per quadrature cycle; forward
 * (positive v) is channel A leading B. Each whole count is one edge on A or B.
 * Battery: open-circuit voltage falls linearly with the charge drawn, from full_mv at
 * 0 mAh to empty_mv at capacity_mah; the terminal voltage sags by I * R_internal with
 *     I = idle_ma + sum over tracks of |d| * motor_ma * (1 + 2 * load'),
 * load' = 1 when stalled (a stalled motor draws three times its running current).
 */
#ifndef ZIMA_EMU_MODEL_H
#define ZIMA_EMU_MODEL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct track_params {
	double tau_s;          /* time constant of the speed response */
	double max_speed_m_s;  /* steady speed at full duty, no load */
	double ticks_per_m;    /* encoder counts (4 per quadrature cycle) per metre */
} track_params;

typedef struct track {
	double duty;           /* signed, -1..1, as last applied */
	double load;           /* 0..1 */
	bool stalled;
	double motor_m_s;      /* the motor model's speed: what the track does under this duty */
	double speed_m_s;      /* what moves the encoders: motor_m_s, or (external wheels) the
	                        * rate of the walk to the other program's counts */
	double position_counts; /* continuous encoder position */
	int64_t counts;         /* whole counts emitted as edges so far */
} track;

typedef struct battery_params {
	double capacity_mah;
	double empty_mv;       /* open-circuit voltage at capacity_mah drawn */
	double internal_mohm;
	double motor_ma;       /* one motor's draw at full duty, running */
	double idle_ma;        /* everything else on the pack */
	bool discharge;        /* false: the open-circuit voltage stays where it is set */
} battery_params;

typedef struct battery {
	double full_mv;        /* open-circuit voltage at 0 mAh drawn (set by the user) */
	double drawn_mah;
	double current_ma;
	double ocv_mv;
	double terminal_mv;
} battery;

/* Quadrature levels of channel A and B for a count: A leads B when counting up. */
void encoder_levels(int64_t counts, int *a, int *b);

/* Advances the motor model (motor_m_s) by dt_s: first order towards the duty's speed. With
 * external wheels the other program moves its tracks at this speed (one motor model). */
void motor_step(track *t, const track_params *p, double dt_s);

/* Advances the track by dt_s (motor_step, and the encoders at that speed). Calls edge(ctx, counts) once per whole count crossed, in
 * order, with the count after the edge (so encoder_levels(counts) are the new levels). */
void track_step(track *t, const track_params *p, double dt_s,
		void (*edge)(void *ctx, int64_t counts), void *ctx);

void battery_set(battery *b, double full_mv);
void battery_step(battery *b, const battery_params *p, const track *tracks, int n_tracks,
		double dt_s);

#endif
