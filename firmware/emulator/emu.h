/* zima-emu's shared declarations: the configuration, the board (the MCU and the robot
 * around it) and the functions the files of the emulator share.
 *
 *   main.c      the main loop: run the MCU in slices, service the pty and stdin, pace
 *   config.c    command-line options
 *   board.c     simavr set-up, running the MCU, resets
 *   pins_io.c   the MCU's pins <-> the model: PWM, DIR, encoders, ADC, servo pulses
 *   probes.c    GPIOR0/GPIOR1 cycle probes written by the firmware (firmware/src/probe.h)
 *   commands.c  JSON commands on stdin
 *   report.c    JSON events on stdout
 *   model.c     the physics (tracks, encoders, battery), no simavr
 *   uart_bridge.c
 * JSON in and out is Debian's cJSON (libcjson-dev).
 */
#ifndef ZIMA_EMU_EMU_H
#define ZIMA_EMU_EMU_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>
#include <sim_avr.h>
#include <sim_irq.h>

#include "../src/pins.h"
#include "model.h"
#include "uart_bridge.h"

#define F_CPU_HZ 16000000UL
#define MCUSR_ADDR 0x54 /* ATmega2560 data-space address of MCUSR */
#define MCUSR_PORF 0x01
#define MCUSR_EXTRF 0x02

/* ---- configuration ------------------------------------------------------------------ */

typedef struct config {
	const char *firmware;
	const char *pty_link;
	double speed;          /* emulated seconds per wall second; <= 0: unpaced */
	double state_hz;       /* periodic state lines; 0: only on request */
	double physics_us;     /* model step */
	double max_lag_ms;     /* behind the wall clock by more than this: give up catching up */
	double divider;        /* pack voltage / ADC pin voltage */
	double battery_mv;
	double wheels_min_edge_us; /* external wheels: closest spacing of one side's edges */
	double wheels_max_spread_ms; /* external wheels: longest time one command is spread over */
	bool reset_on_open;    /* emulate the DTR auto-reset of a real Mega */
	track_params track;
	battery_params battery;
	int simavr_log;
} config;

void parse_args(int argc, char **argv, config *c);

/* ---- probes (probes.c) ----------------------------------------------------------------- */

#define PROBE_REGS 2   /* GPIOR0 (main loop), GPIOR1 (ISRs) */
#define PROBE_IDS 8    /* region ids 1..7 per register */

/* A series of cycle counts: how many, their sum, the least and the most. */
typedef struct cycle_stat {
	uint64_t count, sum, min, max;
} cycle_stat;

typedef struct probe_stats {
	cycle_stat length;                 /* open to close */
	cycle_stat period;                 /* begin to begin of consecutive regions of this id:
	                                      rate and jitter */
	uint64_t last_begin, last_end;     /* cycle of the latest markers */
} probe_stats;

typedef struct probe_reg {
	bool open;
	uint8_t open_id;
	uint64_t open_cycle;
	probe_stats stats[PROBE_IDS];
} probe_reg;

/* ---- the board ------------------------------------------------------------------------ */

typedef struct pin_ref {
	char port;
	int bit;
	avr_irq_t *irq;
} pin_ref;

typedef struct motor_io {
	int timer;             /* 1, 3, 4 or 5: 16-bit timer whose channel A drives the PWM pin */
	pin_ref pwm, dir;
	pin_ref enc_a, enc_b;
	/* last reading, for the state line */
	double duty;           /* 0..1 */
	double pwm_hz;
	const char *pwm_mode;
	int dir_level;
} motor_io;

/* External wheels (README.md): another program (the MuJoCo sim) sends absolute encoder
 * counts; the emulator walks the pins there with evenly spaced edges. */
typedef struct wheel_walk {
	int64_t target;        /* absolute count last commanded */
	double next_edge;      /* emulated cycle at which the next edge of the walk is due */
	double spacing;        /* cycles between the walk's edges */
	uint64_t late;         /* commands whose jump was too large for their interval */
} wheel_walk;

typedef struct servo_io {
	pin_ref pin;
	int level;
	uint64_t rise_cycle;
	double width_us;       /* last complete pulse */
	double period_us;      /* rise to rise */
	uint64_t last_rise_cycle;
} servo_io;

typedef struct board {
	config cfg;
	avr_t *avr;
	void (*run_raw)(avr_t *avr);
	uart_bridge uart;
	avr_irq_t *adc0;
	motor_io motor[2];     /* 0 left, 1 right */
	track track[2];
	/* external wheels: the built-in track model no longer moves the encoders */
	bool wheels_external;
	wheel_walk wheel[2];
	uint64_t wheels_cmds;          /* wheels commands with counts since external mode began */
	uint64_t wheels_last_cycle;    /* when the last of them arrived */
	battery batt;
	servo_io servo[ZIMA_SERVO_COUNT];
	pin_ref led;
	double adc_pin_mv;     /* last injected */
	probe_reg probe[PROBE_REGS];
	/* time */
	uint64_t cycles;       /* emulated cycles since start, across MCU resets */
	avr_cycle_count_t last_avr_cycle;
	double wall_anchor;    /* paced: wall time at which cycles_anchor was due */
	uint64_t cycles_anchor;
	double lag_dropped_s;  /* paced: wall time given up on catching up */
	double wall_start;
	/* resets */
	int resets_watchdog, resets_external;
	bool wdt_pending;
	/* levels we drive on input pins, per port 'A'.. ('L' - 'A' + 1 ports) */
	uint8_t ext_mask['L' - 'A' + 1], ext_value['L' - 'A' + 1];
} board;

extern board g_board;
extern volatile sig_atomic_t g_stop;

/* board.c */
double wall_now(void);
void setup_board(board *b);
bool run_until(board *b, uint64_t until);
uint64_t now_cycles(const board *b);
void external_reset(board *b);
void repace(board *b);

/* pins_io.c */
typedef struct port_regs {
	uint8_t pin, ddr, port;
} port_regs;
port_regs port_state(const avr_t *avr, char port);
pin_ref pin(avr_t *avr, char port, int bit);
void inject_adc(board *b, double pin_mv);
void update_adc(board *b);
void drive_input(board *b, const pin_ref *p, int level);
void after_mcu_reset(board *b);
void physics_step(board *b, double dt_s);
void on_servo_pin(struct avr_irq_t *irq, uint32_t value, void *param);
void wheels_external(board *b, bool on);
void wheels_set(board *b, const int64_t target[2]);

/* probes.c */
void probes_attach(board *b);
void probes_clear(board *b);

/* report.c: an event is a cJSON object (its "id": a command's id, copied, or none);
 * emit() prints it as one line and frees it. add_num rounds to `decimals` places. */
cJSON *event_new(const char *event, const cJSON *id);
void add_num(cJSON *o, const char *key, double value, int decimals);
void add_int(cJSON *o, const char *key, int64_t value);
void emit(cJSON *o);
void emit_state(board *b, const cJSON *id);
void emit_probes(board *b, const cJSON *id);
void emit_simple(const char *event, const cJSON *id, const char *key, const char *value);
void emit_reset(board *b, const char *cause);
void emit_motor(board *b, int side, double duty);

/* commands.c */
bool service_stdin(board *b);

#endif
